"""Replay memory for stacks of frames that keeps each frame once: 84·84 bytes per Atari transition instead of
two stacks of four (8·84·84 bytes), so a million transitions take ≈7 GB instead of ≈56 GB."""
from __future__ import annotations

from typing import Any

import numpy as np

from tinydqn.buffers import Batch, ReplayBuffer


class FrameReplayBuffer(ReplayBuffer):
  """A ReplayBuffer for observations that are stacks of an env's last k frames, as Gymnasium's
  FrameStackObservation makes them (padded with the episode's first frame after a reset).

  Row i keeps only the newest frame of its φ_t. The older frames of φ_t are the newest frames of the same env's
  earlier rows (`num_envs` rows apart), and φ_{t+1} is φ_t shifted by one frame plus the newest frame of the
  env's next row. Stacks are rebuilt at sample time, equal to what the env returned, and never mix episodes.
  What the rows cannot tell is kept aside:
  - `starts[i]`: φ_t began an episode (its first frame k times): walking back stops there.
  - `finals`: row → the newest frame of φ_{t+1} when the env's next row does not continue it (an episode ended
    and the env was reset). One per episode, in a dict.
  - `_history[e]`: the k−1 frames before env e's oldest stored row, newest first, with their start flags
    (overwritten rows, or the older frames of the first stack added).
  - `_next[e]`: φ_{t+1} of env e's newest row, whose next row is not stored yet.
  Which rows continue which is read from the observations themselves, not from the terminated/truncated
  flags, so storing a life loss as terminal (the game goes on) changes nothing here. Sampling, n-step returns
  and priorities are ReplayBuffer's, unchanged.
  """

  def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype | type, *args: Any, **kwargs: Any):
    """ReplayBuffer's arguments; obs_shape is (frames per stack, *frame shape)."""
    super().__init__(capacity, (0,), obs_dtype, *args, **kwargs)  # its obs/next_obs are empty columns
    num_envs = self.num_envs
    self.obs_shape, self.obs_dtype = tuple(obs_shape), np.dtype(obs_dtype)
    self.stack, frame = obs_shape[0], obs_shape[1:]
    self.frames = np.zeros((self.capacity, *frame), obs_dtype)
    self.starts = np.zeros(self.capacity, bool)
    self.finals: dict[int, np.ndarray] = {}
    self._history = np.zeros((num_envs, self.stack - 1, *frame), obs_dtype)
    self._history_starts = np.zeros((num_envs, self.stack - 1), bool)
    self._next: np.ndarray | None = None
    self._none = np.zeros((num_envs, 0), obs_dtype)

  def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
          terminated: np.ndarray, truncated: np.ndarray) -> None:
    n, i = len(actions), self.pos
    if n != self.num_envs: raise ValueError(f"expected {self.num_envs} transitions (one per env), got {n}")
    if not np.array_equal(next_obs[:, :-1], obs[:, 1:]):
      raise ValueError("next_obs is not obs shifted by one frame: FrameReplayBuffer stores frame stacks only")
    rows = np.arange(i, i + n)
    starts = np.zeros(n, bool)
    if self._next is None: self._history[:] = obs[:, -2::-1]  # the first stacks: their older frames come first
    else:
      starts = ~(obs == self._next).reshape(n, -1).all(axis=1)
      for e in np.flatnonzero(starts):
        if not (obs[e] == obs[e, -1]).all():
          raise ValueError("a stack that does not continue the env's previous one must start an episode (its first "
                           "frame repeated: FrameStackObservation's padding_type='reset')")
        self.finals[(i - n + e) % self.capacity] = self._next[e, -1].copy()
    if self.size == self.capacity:  # the oldest rows go: their frames become the history before the next oldest
      for r in rows.tolist(): self.finals.pop(r, None)
      if self.stack > 1:
        self._history[:, 1:], self._history[:, 0] = self._history[:, :-1], self.frames[rows]
        self._history_starts[:, 1:], self._history_starts[:, 0] = self._history_starts[:, :-1], self.starts[rows]
    self.frames[rows], self.starts[rows] = obs[:, -1], starts
    self._next = np.array(next_obs, copy=True)
    super().add(self._none, actions, rewards, self._none, terminated, truncated)

  def gather_into(self, idx: np.ndarray, out: Batch) -> None:
    rewards, discounts, last = self.n_step_returns(idx)
    self._stack_into(idx, out.obs, self.stack)
    self._stack_into(last, out.next_obs, self.stack - 1)  # φ_{t+1} is φ_t shifted by one frame ...
    self._next_frames(last, out.next_obs[:, -1])  # ... and one new frame
    np.take(self.actions, idx, out=out.actions)
    out.rewards[:], out.discounts[:] = rewards, discounts

  def _stack_into(self, idx: np.ndarray, dst: np.ndarray, depth: int) -> None:
    """dst[:, depth-1-k] = the newest frame of the observation k steps before row idx's, in the same episode
    (an episode's first frame repeats)."""
    s, rows = self.num_envs, self.capacity // self.num_envs
    stored, newest = self.size // s, self.newest_row
    env, age = idx % s, self.rows_ahead(idx)  # age 0: the env's newest row; ≥ stored: in _history
    start = np.zeros(len(idx), bool)
    for k in range(depth):
      if k: age = np.where(start, age, age + 1)
      row = ((newest - np.minimum(age, stored - 1)) % rows) * s + env
      dst[:, depth - 1 - k] = self.frames[row]
      start = self.starts[row]
      if (old := np.flatnonzero(age >= stored)).size:
        dst[old, depth - 1 - k] = self._history[env[old], age[old] - stored]
        start[old] = self._history_starts[env[old], age[old] - stored]

  def _next_frames(self, idx: np.ndarray, dst: np.ndarray) -> None:
    """dst[b] = the newest frame of φ_{t+1} of row idx[b]."""
    s = self.num_envs
    dst[:] = self.frames[(idx + s) % self.capacity]  # the env's next row, where it continues the episode
    for b in np.flatnonzero(self.rows_ahead(idx) == 0): dst[b] = self._next[idx[b] % s, -1]
    if self.finals:
      for b, r in enumerate(idx.tolist()):
        if (f := self.finals.get(r)) is not None: dst[b] = f

  # ---- snapshots ----
  @property
  def nbytes(self) -> int:
    aside = [self._history, self._history_starts, *([self._next] if self._next is not None else []), *self.finals.values()]
    return super().nbytes + sum(a.nbytes for a in aside)

  def _arrays(self) -> dict[str, np.ndarray]:
    rows = {k: a for k, a in super()._arrays().items() if k not in ("obs", "next_obs")}
    return {**rows, "frames": self.frames, "starts": self.starts}

  def state_dict(self) -> dict[str, np.ndarray]:
    state = {**super().state_dict(), "history": self._history, "history_starts": self._history_starts,
             "final_rows": np.array(sorted(self.finals), np.int64)}
    state["final_frames"] = np.stack([self.finals[r] for r in state["final_rows"].tolist()]) if self.finals else \
        np.zeros((0, *self.frames.shape[1:]), self.frames.dtype)
    if self._next is not None: state["next"] = self._next
    return state

  def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
    super().load_state_dict(state)
    self._history[:], self._history_starts[:] = state["history"], state["history_starts"]
    self.finals = {int(r): f.copy() for r, f in zip(state["final_rows"], state["final_frames"])}
    self._next = np.array(state["next"]) if "next" in state else None
