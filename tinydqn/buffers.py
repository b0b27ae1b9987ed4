"""Replay memory D: a preallocated ring of transitions with O(batch) uniform sampling."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
  """Arrays for one minibatch, filled in place by `ReplayBuffer.sample_into`."""
  obs: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  next_obs: np.ndarray
  terminated: np.ndarray

  @classmethod
  def empty(cls, batch_size: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> Batch:
    return cls(obs=np.zeros((batch_size, *obs_shape), obs_dtype), actions=np.zeros(batch_size, np.int32),
               rewards=np.zeros(batch_size, np.float32), next_obs=np.zeros((batch_size, *obs_shape), obs_dtype),
               terminated=np.zeros(batch_size, np.float32))


class ReplayBuffer:
  """Stores (φ_t, a_t, r_t, φ_{t+1}, terminated, truncated) in fixed numpy arrays; the oldest is overwritten.

  Observations keep their own dtype (uint8 frames stay uint8). `terminated` (a true end: stop bootstrapping)
  and `truncated` (a time limit cut the episode: keep bootstrapping from φ_{t+1}) are kept apart.
  """

  def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type):
    self.capacity = capacity
    self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
    self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
    self.actions = np.zeros(capacity, dtype=np.int32)
    self.rewards = np.zeros(capacity, dtype=np.float32)
    self.terminated = np.zeros(capacity, dtype=np.float32)
    self.truncated = np.zeros(capacity, dtype=np.float32)
    self.pos = 0  # where the next transition goes
    self.size = 0  # how many are stored

  def __len__(self) -> int:
    return self.size

  def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
          terminated: np.ndarray, truncated: np.ndarray) -> None:
    """Stores a batch of transitions (one per environment; leading dimension n)."""
    n, i = len(actions), self.pos
    rows = slice(i, i + n) if i + n <= self.capacity else (i + np.arange(n)) % self.capacity
    self.obs[rows] = obs
    self.actions[rows] = actions
    self.rewards[rows] = rewards
    self.next_obs[rows] = next_obs
    self.terminated[rows] = terminated
    self.truncated[rows] = truncated
    self.pos = (i + n) % self.capacity
    self.size = min(self.size + n, self.capacity)

  def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform indices with replacement over the stored transitions."""
    if self.size == 0: raise ValueError("cannot sample from an empty replay buffer")
    return rng.integers(0, self.size, size=batch_size)

  def sample_into(self, out: Batch, rng: np.random.Generator) -> np.ndarray:
    """Gathers a uniform minibatch into `out` without allocating; returns the indices drawn."""
    idx = self.sample_indices(len(out.actions), rng)
    np.take(self.obs, idx, axis=0, out=out.obs)
    np.take(self.actions, idx, out=out.actions)
    np.take(self.rewards, idx, out=out.rewards)
    np.take(self.next_obs, idx, axis=0, out=out.next_obs)
    np.take(self.terminated, idx, out=out.terminated)
    return idx

  # ---- snapshots ----
  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in self._arrays().values())

  def _arrays(self) -> dict[str, np.ndarray]:
    return {"obs": self.obs, "next_obs": self.next_obs, "actions": self.actions, "rewards": self.rewards,
            "terminated": self.terminated, "truncated": self.truncated}

  def state_dict(self) -> dict[str, np.ndarray]:
    """The stored rows and the ring's position, for a snapshot."""
    n = self.size
    return {**{k: a[:n] for k, a in self._arrays().items()}, "pos": np.array(self.pos), "size": np.array(n)}

  def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
    n = int(state["size"])
    if n > self.capacity: raise ValueError(f"snapshot holds {n} transitions, more than the capacity {self.capacity}")
    for k, a in self._arrays().items(): a[:n] = state[k]
    self.pos, self.size = int(state["pos"]), n
