"""The docs say what the code does: the README's commands parse, its figures are the benchmarks', the module list is
complete, and the front pages stay short enough to be read. Its Python example runs in tests/test_api.py."""
import re
import shlex
from pathlib import Path

import pytest

from tinydqn.cli import _parse, build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
pytestmark = pytest.mark.cpu_stage  # reads files and runs the CPU example: nothing here depends on the device


def fenced_blocks(text: str, language: str) -> list[str]:
  return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def section(text: str, title: str) -> str:
  start = text.index(f"## {title}\n")
  end = text.find("\n## ", start + 1)
  return text[start:end if end != -1 else len(text)]


def test_module_list_names_every_module():
  built = section((ROOT / "docs" / "architecture.md").read_text(), "How it is built")
  named = set(re.findall(r"`(\w+\.py)`", built))
  modules = {p.name for p in (ROOT / "tinydqn").glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
  assert modules <= named, f"docs/architecture.md's module list omits {sorted(modules - named)}"


def test_front_pages_stay_short():
  assert len(README.splitlines()) <= 150
  assert len((ROOT / "BENCHMARKS.md").read_text().splitlines()) <= 600


@pytest.mark.parametrize("preset", sorted((ROOT / "tinydqn" / "presets").glob("*.toml")), ids=lambda p: p.stem)
def test_preset_comment_is_at_most_ten_lines(preset):
  comment_lines = [line for line in preset.read_text().splitlines() if line.lstrip().startswith("#")]
  assert len(comment_lines) <= 10, f"{preset.name}: {len(comment_lines)} comment lines; screens go to BENCHMARKS.md"


def readme_commands() -> list[list[str]]:
  block = fenced_blocks(section(README, "Command line"), "bash")[0]
  lines = [line.split("  #")[0].strip() for line in block.splitlines()]
  return [shlex.split(line)[1:] for line in lines if line.startswith("tinydqn ")]


def test_readme_cli_lines_parse():
  commands = readme_commands()
  assert {argv[0] for argv in commands} >= {"train", "eval", "presets", "plot", "record", "sweep"}
  for argv in commands: _parse(build_parser(), argv)  # a flag that does not exist raises UserError


def test_readme_results_figures_are_in_benchmarks():
  benchmarks = (ROOT / "BENCHMARKS.md").read_text().replace("−", "-")
  results = section(README, "Results").replace("−", "-")
  figures = set(re.findall(r"-?\d+\.\d+", results)) | set(re.findall(r"\b\d+/\d+\b", results))
  assert len(figures) >= 10
  missing = sorted(f for f in figures if f not in benchmarks)
  assert not missing, f"README figures not in BENCHMARKS.md: {missing}"

