"""Checkpoints: the agent's tensors in safetensors, and a JSON file beside it (config, step, version, shapes).

Both are written to a temporary name and renamed, the JSON last: a checkpoint whose JSON exists is whole.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tinygrad.nn.state import safe_load

import tinydqn
from tinydqn.agent import DQNAgent
from tinydqn.config import Config
from tinydqn.errors import UserError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
  config: Config
  step: int
  obs_shape: tuple[int, ...]
  obs_dtype: np.dtype
  n_actions: int
  arrays: dict[str, np.ndarray]
  path: Path
  eval: dict[str, Any] | None = None  # a best checkpoint's evaluation: step, mean_return, std_return, episodes

  def make_agent(self, device: str | None = None) -> DQNAgent:
    """A new agent holding this checkpoint's weights and optimizer state."""
    agent = DQNAgent(self.config, self.obs_shape, self.obs_dtype, self.n_actions, device)
    agent.load_state_dict(self.arrays)
    return agent


def save_checkpoint(agent: DQNAgent, step: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype,
                    stem: str | Path, eval_result: dict[str, Any] | None = None) -> Path:
  """Writes `stem.safetensors` and `stem.json` (with `eval_result`, the evaluation that chose these weights, under
  "eval"); returns the JSON path."""
  stem = Path(stem)
  stem.parent.mkdir(parents=True, exist_ok=True)
  weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
  tmp_weights = weights.with_name(weights.name + ".tmp")
  # Written from host arrays: tinygrad's safe_save builds and schedules a copy graph for every save (≈ 75 ms for
  # a small agent, ≈ 1 ms this way; BENCHMARKS.md, "The loop's host work, cut again"). tinygrad reads the file back.
  save_file(agent.state_arrays(), str(tmp_weights))
  os.replace(tmp_weights, weights)
  info = {"format": FORMAT_VERSION, "tinydqn_version": tinydqn.__version__, "step": step,
          "weights": weights.name, "obs_shape": list(obs_shape), "obs_dtype": np.dtype(obs_dtype).name,
          "n_actions": agent.n_actions, "config": agent.config.to_dict(),
          **({"eval": eval_result} if eval_result is not None else {})}
  tmp_meta = meta.with_name(meta.name + ".tmp")
  tmp_meta.write_text(json.dumps(info, indent=2))
  os.replace(tmp_meta, meta)
  return meta


def check_format(found: Any, expected: int, what: str) -> None:
  """A file of another format version is refused in one line naming both, before its contents are misread."""
  if found != expected:
    raise UserError(f"{what} has format version {found}; this tinydqn {tinydqn.__version__} reads version {expected}")


def find_checkpoint(path: str | Path, best: bool = False) -> Path:
  """The checkpoint's JSON for a run directory (its final checkpoint, else its newest snapshot; with `best`, its
  best evaluated policy), a .json or .safetensors path, or the stem the two share."""
  path = Path(path)
  if best:
    if not path.is_dir(): raise UserError(f"--best takes a run directory, not a checkpoint file: {path}")
    if not (path / "checkpoints" / "best.json").is_file():
      raise UserError(f"no best checkpoint in {path}: no periodic evaluation has run there (eval_freq 0, or the run "
                      "stopped before its first)")
    return path / "checkpoints" / "best.json"
  if path.is_dir():
    ckpt_dir = path / "checkpoints"
    if (ckpt_dir / "final.json").exists(): return ckpt_dir / "final.json"
    snapshots = sorted(ckpt_dir.glob("step_*/agent.json"))  # an unfinished run: its newest snapshot
    if not snapshots: raise UserError(f"no checkpoint in {path} (looked for {ckpt_dir}/final.json and snapshots)")
    return snapshots[-1]
  candidates = [path.with_suffix(".json")] if path.suffix == ".safetensors" else [path, Path(f"{path}.json")]
  found = next((c for c in candidates if c.is_file()), None)
  if found is None: raise UserError(f"checkpoint not found: {path}")
  return found


def load_checkpoint(path: str | Path, best: bool = False) -> Checkpoint:
  """Reads a checkpoint (see `find_checkpoint`) fully into host memory; any unreadable part is a UserError naming
  the file."""
  meta_path = find_checkpoint(path, best)
  try:
    info: dict[str, Any] = json.loads(meta_path.read_text())
    check_format(info.get("format"), FORMAT_VERSION, f"checkpoint {meta_path}")
    weights = meta_path.with_name(info["weights"])
    if not weights.exists(): raise UserError(f"checkpoint weights missing: {weights}")
    arrays = {k: v.numpy() for k, v in safe_load(str(weights)).items()}
    config = Config.from_dict(info["config"])
    return Checkpoint(config, int(info["step"]), tuple(info["obs_shape"]), np.dtype(info["obs_dtype"]),
                      int(info["n_actions"]), arrays, meta_path, info.get("eval"))
  except UserError:
    raise
  except Exception as e:  # a truncated, corrupted or foreign file: say which, in one line
    raise UserError(f"cannot read checkpoint {meta_path}: {type(e).__name__}: {e}".splitlines()[0]) from None
