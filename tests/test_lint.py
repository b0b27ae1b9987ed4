"""`ruff check` passes on the whole tree (the configuration is in pyproject.toml)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruff", reason="ruff is in the test extra: pip install -e '.[test]'")


@pytest.mark.cpu_stage  # reads files: nothing here depends on the device
def test_ruff_check_passes():
  root = Path(__file__).resolve().parent.parent
  proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(root)], capture_output=True, text=True,
                        cwd=root)
  assert proc.returncode == 0, proc.stdout + proc.stderr
