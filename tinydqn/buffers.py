"""Replay memory D: a preallocated ring of transitions, uniform or prioritized sampling, n-step returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinydqn.sumtree import SumTree


@dataclass
class Batch:
  """Arrays for one minibatch, filled in place by `ReplayBuffer.sample_into`.

  `rewards` is the (n-step) discounted return R_j and `discounts` the factor in front of the bootstrap value:
  y_j = R_j + discounts_j · max_a' Q̂(next_obs_j, a'), with discounts_j = γᵏ, or 0 after a true terminal.
  `weights` are importance-sampling weights (all 1 with uniform sampling).
  """
  obs: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  next_obs: np.ndarray
  discounts: np.ndarray
  weights: np.ndarray

  @classmethod
  def empty(cls, batch_size: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype) -> Batch:
    f32 = lambda: np.zeros(batch_size, np.float32)
    return cls(obs=np.zeros((batch_size, *obs_shape), obs_dtype), actions=np.zeros(batch_size, np.int32),
               rewards=f32(), next_obs=np.zeros((batch_size, *obs_shape), obs_dtype), discounts=f32(),
               weights=np.ones(batch_size, np.float32))


class ReplayBuffer:
  """Stores (φ_t, a_t, r_t, φ_{t+1}, terminated, truncated) in fixed numpy arrays; the oldest is overwritten.

  Observations keep their own dtype (uint8 frames stay uint8). `terminated` (a true end: stop bootstrapping)
  and `truncated` (a time limit cut the episode: keep bootstrapping from φ_{t+1}) are kept apart.
  Each `add` stores one transition per env, so env e's next transition is always `num_envs` rows later:
  n-step returns are summed at sample time by looking ahead along that stride.
  """

  def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type, num_envs: int = 1,
               n_step: int = 1, gamma: float = 0.99, prioritized: bool = False, alpha: float = 0.6,
               priority_eps: float = 1e-6, terminal_fraction: float = 0.0):
    self.num_envs, self.n_step, self.gamma = num_envs, n_step, gamma
    self.terminal_fraction = terminal_fraction
    self._writes = 0  # adds and loads so far: what `terminal_rows` was last computed after
    self._terminal_rows, self._terminal_rows_at = np.zeros(0, dtype=np.int64), -1
    self.capacity = -(-capacity // num_envs) * num_envs  # whole rows of num_envs
    self.obs = np.zeros((self.capacity, *obs_shape), dtype=obs_dtype)
    self.next_obs = np.zeros((self.capacity, *obs_shape), dtype=obs_dtype)
    self.actions = np.zeros(self.capacity, dtype=np.int32)
    self.rewards = np.zeros(self.capacity, dtype=np.float32)
    self.terminated = np.zeros(self.capacity, dtype=np.float32)
    self.truncated = np.zeros(self.capacity, dtype=np.float32)
    self.pos = 0  # where the next transition goes
    self.size = 0  # how many are stored
    self.priorities = SumTree(self.capacity) if prioritized else None
    self.alpha, self.priority_eps = alpha, priority_eps
    self.max_priority = 1.0  # new transitions get the largest priority seen, so each is replayed at least once soon

  def __len__(self) -> int:
    return self.size

  def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
          terminated: np.ndarray, truncated: np.ndarray) -> None:
    """Stores a batch of transitions, one per environment (leading dimension num_envs)."""
    n, i = len(actions), self.pos
    if n != self.num_envs: raise ValueError(f"expected {self.num_envs} transitions (one per env), got {n}")
    rows = slice(i, i + n)  # capacity is a multiple of num_envs: a row never wraps
    self.obs[rows] = obs
    self.actions[rows] = actions
    self.rewards[rows] = rewards
    self.next_obs[rows] = next_obs
    self.terminated[rows] = terminated
    self.truncated[rows] = truncated
    if self.priorities is not None: self.priorities.set(np.arange(i, i + n), self.max_priority ** self.alpha)
    self.pos = (i + n) % self.capacity
    self.size = min(self.size + n, self.capacity)
    self._writes += 1

  # ---- sampling ----
  def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform indices with replacement over the stored transitions."""
    if self.size == 0: raise ValueError("cannot sample from an empty replay buffer")
    idx = rng.integers(0, self.size, size=batch_size)
    if (k := round(self.terminal_fraction * batch_size)) and len(ends := self.terminal_rows()):
      idx[:k] = ends[rng.integers(0, len(ends), size=k)]
    return idx

  def terminal_rows(self) -> np.ndarray:
    """The stored transitions that terminated (recomputed after each `add` or load)."""
    if self._terminal_rows_at != self._writes:
      self._terminal_rows, self._terminal_rows_at = np.flatnonzero(self.terminated[:self.size]), self._writes
    return self._terminal_rows

  def sample_into(self, out: Batch, rng: np.random.Generator, beta: float = 1.0) -> np.ndarray:
    """Draws a minibatch into `out` without allocating; returns the indices drawn.

    Prioritized (Schaul et al. 2016): P(i) = p_i^α / Σ_k p_k^α, drawn stratified from the sum tree, and weights
    w_i = (N·P(i))^−β divided by the largest weight in the batch. Uniform: weights stay 1."""
    if self.priorities is None: idx = self.sample_indices(len(out.actions), rng)
    else:
      if self.size == 0: raise ValueError("cannot sample from an empty replay buffer")
      idx, probs = self.priorities.sample(len(out.actions), rng)
      weights = (self.size * probs) ** -beta
      np.divide(weights, weights.max(), out=out.weights, casting="unsafe")
    self.gather_into(idx, out)
    return idx

  def gather_into(self, idx: np.ndarray, out: Batch) -> None:
    """Writes transitions `idx` into `out`, with n-step returns and discounts."""
    rewards, discounts, last = self.n_step_returns(idx)
    np.take(self.obs, idx, axis=0, out=out.obs)
    np.take(self.actions, idx, out=out.actions)
    np.take(self.next_obs, last, axis=0, out=out.next_obs)
    out.rewards[:], out.discounts[:] = rewards, discounts

  def n_step_returns(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each start index: R = Σ_{k<m} γᵏ r_{t+k}, the discount γᵐ (0 if the episode terminated), and the
    index whose next_obs is bootstrapped from. m ≤ n stops early at a terminal or a truncation (the episode is
    over) and at the newest stored transition of that env (its future is not known yet)."""
    gamma, stride = np.float32(self.gamma), self.num_envs
    rewards = self.rewards[idx].copy()
    discounts = gamma * (1.0 - self.terminated[idx])
    if self.n_step == 1: return rewards, discounts, idx
    ahead = self.rows_ahead(idx)
    last = idx.copy()
    going = (self.terminated[idx] + self.truncated[idx]) == 0
    for k in range(1, self.n_step):
      going &= ahead >= k
      j = (idx + k * stride) % self.capacity
      rewards += np.where(going, gamma ** k * self.rewards[j], 0.0).astype(np.float32)
      discounts = np.where(going, gamma ** (k + 1) * (1.0 - self.terminated[j]), discounts).astype(np.float32)
      last = np.where(going, j, last)
      going &= (self.terminated[j] + self.truncated[j]) == 0
    return rewards, discounts, last

  @property
  def newest_row(self) -> int:
    """The ring row (one transition per env) written last."""
    return (self.pos // self.num_envs - 1) % (self.capacity // self.num_envs)

  def rows_ahead(self, idx: np.ndarray) -> np.ndarray:
    """How many later transitions of the same env are stored after each index (0: that env's newest)."""
    return (self.newest_row - idx // self.num_envs) % (self.capacity // self.num_envs)

  def update_priorities(self, idx: np.ndarray, td_errors: np.ndarray) -> None:
    """p_i = |δ_i| + ε for the transitions just trained on (duplicates in a batch: the last write wins)."""
    priorities = np.abs(td_errors.astype(np.float64)) + self.priority_eps
    self.max_priority = max(self.max_priority, float(priorities.max()))
    self.priorities.set(idx, priorities ** self.alpha)

  # ---- snapshots ----
  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in self._arrays().values()) + (self.priorities.nbytes if self.priorities else 0)

  def _arrays(self) -> dict[str, np.ndarray]:
    return {"obs": self.obs, "next_obs": self.next_obs, "actions": self.actions, "rewards": self.rewards,
            "terminated": self.terminated, "truncated": self.truncated}

  def state_dict(self) -> dict[str, np.ndarray]:
    """The stored rows, the ring's position and the priorities, for a snapshot."""
    n = self.size
    state = {**{k: a[:n] for k, a in self._arrays().items()}, "pos": np.array(self.pos), "size": np.array(n)}
    if self.priorities is not None:
      state["priority_leaves"], state["max_priority"] = self.priorities.leaves[:n], np.array(self.max_priority)
    return state

  def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
    n = int(state["size"])
    if n > self.capacity: raise ValueError(f"snapshot holds {n} transitions, more than the capacity {self.capacity}")
    for k, a in self._arrays().items(): a[:n] = state[k]
    self.pos, self.size = int(state["pos"]), n
    self._writes += 1
    if self.priorities is not None:
      self.priorities.set(np.arange(n), state["priority_leaves"])
      self.max_priority = float(state["max_priority"])
