"""The run directory: where a run's config, metrics, evaluations and checkpoints live."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tinydqn.errors import UserError

if TYPE_CHECKING:
  from tinydqn.config import Config

# The files a run writes; --force removes these and nothing else, so a mistyped --run-dir cannot wipe a folder.
RUN_FILES = ("config.json", "metrics.csv", "eval.csv", "summary.json")


def default_run_dir(env_id: str, seed: int) -> Path:
  return Path("runs") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', env_id)}__s{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(path: Path, force: bool) -> None:
  """Refuses a directory that already holds a run unless `force`; touches nothing."""
  if path.exists() and not path.is_dir(): raise UserError(f"run directory {path} exists and is not a directory")
  if path.exists() and any(path.iterdir()) and not force:
    raise UserError(f"run directory {path} already exists and is not empty (pass --force to overwrite its run)")


def check_same_config(path: Path, config: Config) -> None:
  """Refuses a run directory whose saved config differs from `config`: a kept run of other settings must not be
  continued or reported as this one. A directory without config.json passes. The device it names is not compared:
  it is where the run ran, not what it learns with."""
  saved = path / "config.json"
  if not saved.exists(): return
  # Fields added since the run was saved take their defaults (the values the run was trained with).
  old, new = {**type(config)().to_dict(), **json.loads(saved.read_text())}, config.to_dict()
  old.pop("device", None)
  if old != new:
    diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v)
    raise UserError(f"{path} holds a run with another config ({diff}); use another output folder")


def prepare_run_dir(path: Path, force: bool) -> Path:
  """Creates the run directory; with `force`, first removes the files of the run already there."""
  check_run_dir(path, force)
  path.mkdir(parents=True, exist_ok=True)
  for name in RUN_FILES: (path / name).unlink(missing_ok=True)
  ckpt_dir = path / "checkpoints"
  if ckpt_dir.is_dir():
    for f in ckpt_dir.iterdir():
      if f.is_dir() and (f.name.startswith("step_") or f.name.startswith(".step_")): shutil.rmtree(f)
      elif f.suffix in (".json", ".safetensors", ".tmp"): f.unlink()
  if (path / "tb").is_dir():  # the old run's TensorBoard events, or both runs' curves would show as one
    for f in (path / "tb").glob("events.out.tfevents.*"): f.unlink()
  return path
