"""The README's module list names every module of the package (it had drifted: four were missing)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.cpu_stage  # reads files: nothing here depends on the device
def test_readme_names_every_module():
  readme = (ROOT / "README.md").read_text()
  built = readme[readme.index("## How it is built"):readme.index("## Results")]
  named = set(re.findall(r"`(\w+\.py)`", built))
  modules = {p.name for p in (ROOT / "tinydqn").glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
  assert modules <= named, f"README's module list omits {sorted(modules - named)}"
