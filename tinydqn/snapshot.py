"""Training snapshots: everything needed to continue a run exactly where it stopped.

A snapshot is a directory `checkpoints/step_<N>/` holding the agent (a checkpoint: safetensors + JSON), the
replay memory (npz),
the loop state with the numpy RNG and the pickled environments (cloudpickle), and a manifest with the
size and SHA-256 of each file. It is written under a temporary name, fsynced and renamed, so a crash
leaves either the whole snapshot or none; loading verifies the manifest and falls back to the previous
snapshot when the newest is damaged. Snapshots are pickles: only resume runs you trust.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
from tinygrad import Tensor, dtypes
from tinygrad.nn.state import safe_load

from tinydqn.agent import DQNAgent
from tinydqn.buffers import ReplayBuffer
from tinydqn.checkpoint import check_format, save_checkpoint
from tinydqn.devices import to_device
from tinydqn.errors import UserError

FORMAT_VERSION = 1
PREFIX = "step_"
# What a damaged or incomplete snapshot raises while loading (a missing file, a checksum or size mismatch, a
# truncated archive or pickle). Anything else (MemoryError loading a large replay memory, another format
# version) is not damage, and is raised as it is rather than reported as a damaged snapshot.
DAMAGE = (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile)


@dataclass
class Snapshot:
  step: int
  path: Path
  agent: dict[str, np.ndarray]
  replay: dict[str, np.ndarray] | None  # None when the run was saved without its replay memory
  state: dict[str, Any]  # loop state, rng state and environments, as saved by the training loop


def snapshot_name(step: int) -> str:
  """The directory name of snapshot `step` (zero-padded, so names sort by step)."""
  return f"{PREFIX}{step:012d}"


def snapshot_dirs(ckpt_dir: Path) -> list[Path]:
  """Complete snapshot directories, oldest first."""
  if not ckpt_dir.is_dir(): return []
  return sorted(p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit())


def save_snapshot(ckpt_dir: Path, step: int, agent: DQNAgent, memory: ReplayBuffer, state: dict[str, Any],
                  include_replay: bool, keep: int) -> Path | None:
  """Writes snapshot `step` and keeps the newest `keep`. Returns None (with a warning) if the disk is too full.
  Its `agent.safetensors` + `agent.json` are an ordinary checkpoint, so `tinydqn eval` can use a snapshot."""
  ckpt_dir.mkdir(parents=True, exist_ok=True)
  replay_bytes = memory.nbytes if include_replay else 0
  agent_bytes = agent.state_nbytes()
  needed = int(1.1 * (replay_bytes + agent_bytes)) + (1 << 20)
  free = shutil.disk_usage(ckpt_dir).free
  if free < needed:
    print(f"tinydqn: warning: snapshot at step {step} skipped: it needs {needed / 2**20:.0f} MiB and only "
          f"{free / 2**20:.0f} MiB are free on {ckpt_dir}", file=sys.stderr)
    return None
  for stale in ckpt_dir.glob(f".{PREFIX}*.tmp"): shutil.rmtree(stale)  # left by a crash in mid-write
  final, tmp = ckpt_dir / snapshot_name(step), ckpt_dir / f".{snapshot_name(step)}.tmp"
  try:
    _write_files(tmp, step, agent, memory, state, include_replay)
  except OSError as e:  # the disk filled up after all (another writer, a quota): the run goes on without it
    if e.errno not in (errno.ENOSPC, errno.EDQUOT): raise
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"tinydqn: warning: snapshot at step {step} skipped: the disk filled up while writing it ({e.strerror})",
          file=sys.stderr)
    return None
  if final.exists(): shutil.rmtree(final)
  os.rename(tmp, final)
  _fsync(ckpt_dir)
  for old in snapshot_dirs(ckpt_dir)[:-keep]: shutil.rmtree(old)
  return final


def _write_files(tmp: Path, step: int, agent: DQNAgent, memory: ReplayBuffer, state: dict[str, Any],
                 include_replay: bool) -> None:
  """The snapshot's files in `tmp`, with their manifest, fsynced."""
  tmp.mkdir()
  save_checkpoint(agent, step, agent.batch.obs.shape[1:], agent.batch.obs.dtype, tmp / "agent")
  if include_replay:
    with open(tmp / "replay.npz", "wb") as f: np.savez(f, **memory.state_dict())
  (tmp / "state.pkl").write_bytes(cloudpickle.dumps(state))
  files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
  (tmp / "manifest.json").write_text(json.dumps({"format": FORMAT_VERSION, "step": step, "files": files}, indent=1))
  for p in tmp.iterdir(): _fsync(p)
  _fsync(tmp)


def load_latest_snapshot(ckpt_dir: Path) -> Snapshot:
  """The newest snapshot that verifies; damaged ones are named on stderr and skipped."""
  candidates = snapshot_dirs(ckpt_dir)
  if not candidates:
    raise UserError(f"no snapshot to resume from in {ckpt_dir} (the run stopped before its first one; "
                    "start it again with --force)")
  for path in reversed(candidates):
    try:
      return load_snapshot(path)
    except DAMAGE as e:  # damaged or incomplete: say so in one line, then try the one before
      print(f"tinydqn: warning: snapshot {path} is unusable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "trying the previous one", file=sys.stderr)
  raise UserError(f"no usable snapshot in {ckpt_dir} (all {len(candidates)} failed verification)")


def load_snapshot(path: Path) -> Snapshot:
  """One snapshot directory, verified against its manifest (raises if a file is missing or altered)."""
  manifest = json.loads((path / "manifest.json").read_text())
  check_format(manifest.get("format"), FORMAT_VERSION, f"snapshot {path}")
  for name, info in manifest["files"].items():
    f = path / name
    if f.stat().st_size != info["bytes"]: raise ValueError(f"{name} has {f.stat().st_size} bytes, expected {info['bytes']}")
    if _sha256(f) != info["sha256"]: raise ValueError(f"{name} does not match its checksum")
  agent = {k: v.numpy() for k, v in safe_load(str(path / "agent.safetensors")).items()}
  replay = None
  if "replay.npz" in manifest["files"]:
    with np.load(path / "replay.npz") as z: replay = {k: z[k] for k in z.files}
  state = cloudpickle.loads((path / "state.pkl").read_bytes())
  return Snapshot(int(manifest["step"]), path, agent, replay, state)


def tinygrad_rng_state() -> dict[str, Any]:
  """tinygrad's random state: the seed and, per device, its seed tensor and draw counter."""
  return {"seed": Tensor._seed, "devices": {d: (Tensor._device_seeds[d].numpy(), c.numpy())
                                            for d, c in Tensor._device_rng_counters.items()}}


def restore_tinygrad_rng(state: dict[str, Any], device: str) -> None:
  """Restores tinygrad's seed, and the draw state of `device` (the one the resumed run uses) if the snapshot has
  it. States of other devices are left out: that device may not exist where the run resumes (a CL run continued on
  the CPU), and recreating its tensors there would fail."""
  Tensor.manual_seed(state["seed"])
  if device in state["devices"]:
    seed, counter = state["devices"][device]
    Tensor._device_seeds[device] = to_device(seed, device).cast(dtypes.uint32).realize()
    Tensor._device_rng_counters[device] = to_device(counter, device).cast(dtypes.uint32).realize()


def _sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""): h.update(chunk)
  return h.hexdigest()


def _fsync(path: Path) -> None:
  fd = os.open(path, os.O_RDONLY)
  try: os.fsync(fd)
  finally: os.close(fd)
