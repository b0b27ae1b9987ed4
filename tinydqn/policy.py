"""What a run hands over, as an object that acts: `tinydqn.load(path)` → `Policy.predict(obs)`.

Greedy actions are the ones evaluation plays (`evaluate.py`): argmax_a Q(φ, a), noisy nets on their mean weights.
Observations are as `tinydqn.make_env(env_id)` gives them (for classic control, as `gym.make` does; Atari and
MinAtar frames after tinydqn's preprocessing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from tinydqn.agent import DQNAgent
from tinydqn.checkpoint import load_checkpoint, save_checkpoint
from tinydqn.config import Config
from tinydqn.errors import UserError
from tinydqn.train import linear_epsilon


class Policy:
  """A trained agent that acts, with what a checkpoint records about it."""

  def __init__(self, agent: DQNAgent, obs_shape: tuple[int, ...], obs_dtype: np.dtype, step: int):
    self.agent, self.obs_shape, self.obs_dtype, self.step = agent, tuple(obs_shape), np.dtype(obs_dtype), step

  @property
  def config(self) -> Config: return self.agent.config

  def predict(self, obs: ArrayLike) -> int | np.ndarray:
    """The greedy action for one observation (an int), or for a batch [n, *obs_shape] (an int64 array of n)."""
    batch, single = self._as_batch(obs)
    actions = self.agent.q_values(batch).argmax(axis=1)
    return int(actions[0]) if single else actions

  def explore(self, obs: ArrayLike, rng: np.random.Generator) -> int | np.ndarray:
    """The run's behaviour policy at its end, as `predict` takes and returns them: ε-greedy with the final ε of its
    schedule (noisy nets: ε 0, greedy on freshly drawn noisy weights), random numbers from `rng`."""
    batch, single = self._as_batch(obs)
    actions = self.agent.act(batch, linear_epsilon(self.config, self.config.total_timesteps), rng)
    return int(actions[0]) if single else actions

  def q_values(self, obs: ArrayLike) -> np.ndarray:
    """Q(φ, ·) for a batch of observations [n, *obs_shape] (expected returns with a distributional head)."""
    batch, _ = self._as_batch(obs)
    return self.agent.q_values(batch)

  def save(self, path: str | Path) -> Path:
    """Writes `path`.json and `path`.safetensors, a checkpoint `tinydqn.load(path)` reads; returns the JSON's path."""
    stem = Path(path)
    if stem.suffix in (".json", ".safetensors"): stem = stem.with_suffix("")
    # save_checkpoint swaps the stem's suffix for its own: give it one, so that a stem with a dot (lr0.001) keeps its name
    return save_checkpoint(self.agent, self.step, self.obs_shape, self.obs_dtype, stem.with_name(stem.name + ".json"))

  def _as_batch(self, obs: ArrayLike) -> tuple[np.ndarray, bool]:
    """`obs` as a batch of the checkpoint's dtype, and whether it was one observation."""
    batch = np.asarray(obs, dtype=self.obs_dtype)
    if batch.shape == self.obs_shape: return batch[None], True
    if batch.shape[1:] == self.obs_shape and len(batch) > 0: return batch, False
    raise UserError(f"this policy takes observations of shape {self.obs_shape} (one) or (n, {', '.join(map(str, self.obs_shape))}) "
                    f"(a batch), got shape {batch.shape}")


def load(path: str | Path, best: bool = False, device: str | None = None) -> Policy:
  """The policy in a run directory (its final checkpoint, else its newest snapshot; with `best`, its best evaluated
  policy) or in a checkpoint file (.json, .safetensors, or the stem they share), on `device` (a tinygrad device;
  default the CPU, or tinygrad's DEV when set)."""
  ckpt = load_checkpoint(path, best)
  return Policy(ckpt.make_agent(device), ckpt.obs_shape, ckpt.obs_dtype, ckpt.step)
