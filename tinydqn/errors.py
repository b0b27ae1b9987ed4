"""Exceptions the CLI turns into a one-line message and an exit code."""
import importlib
import signal
from types import ModuleType


class UserError(Exception):
  """Bad input from the user: an invalid config value, an unknown env or preset, a missing checkpoint (exit 2)."""


class Interrupted(Exception):
  """SIGINT or SIGTERM arrived: the loop stopped and says what a resume would continue from (exit 128 + signal)."""

  def __init__(self, signum: int, step: int, what: str):
    super().__init__(f"{signal.Signals(signum).name} at step {step}: {what}")
    self.exit_code = 128 + signum


class TrainingDiverged(Exception):
  """The loss became NaN or infinite; the snapshots written before it stay as they were (exit 1)."""


def import_extra(module: str, extra: str, feature: str) -> ModuleType:
  """Imports an optional dependency, or says which pip extra brings it (a UserError: exit 2, one line)."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise UserError(f"{feature} needs {module.split('.')[0]}: pip install 'tinydqn[{extra}]'") from None
