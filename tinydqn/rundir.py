"""The run directory: where a run's config, metrics, evaluations and checkpoints live."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from tinydqn.errors import UserError

if TYPE_CHECKING:
  from tinydqn.config import Config

# The files a run writes; --force removes these and nothing else, so a mistyped --run-dir cannot wipe a folder.
RUN_FILES = ("config.json", "metrics.csv", "eval.csv", "summary.json")
LOCK_FILE = ".lock"  # locked while a run trains in the directory; holds the pid of the process that trains


def default_run_dir(env_id: str, seed: int) -> Path:
  return Path("runs") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', env_id)}__s{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(path: Path, force: bool) -> None:
  """Refuses a directory that already holds a run unless `force`; touches nothing."""
  if path.exists() and not path.is_dir(): raise UserError(f"run directory {path} exists and is not a directory")
  blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
  if blocker is not None: raise UserError(f"cannot create run directory {path}: {blocker} is a file")
  if path.exists() and any(p.name != LOCK_FILE for p in path.iterdir()) and not force:
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


@contextlib.contextmanager
def lock_run_dir(path: Path) -> Iterator[None]:
  """Creates `path` if needed and holds an exclusive lock on it for the block: a second run (a --force or a
  --resume of the same directory, a sweep trial of the same name) is refused in one line naming the holder's pid.
  The kernel drops the lock when the holder exits, however it exits, so a killed run leaves nothing to clean up."""
  try:
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserError(f"cannot create run directory {path}: {e.strerror}") from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EACCES): raise
      holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
      raise UserError(f"{path} is in use by another run (pid {holder}); wait for it to end or use another "
                      "--run-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # closing the descriptor releases the lock


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
