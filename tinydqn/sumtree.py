"""A sum tree over priorities: O(log N) updates and proportional sampling, vectorized over a minibatch."""
from __future__ import annotations

import numpy as np


class SumTree:
  """A complete binary tree in one array: node i has children 2i and 2i+1, the leaves hold the priorities and
  every inner node the sum below it, so the root (node 1) is the total and a descent finds a prefix sum."""

  def __init__(self, capacity: int):
    self.capacity = capacity
    self.first_leaf = 1 << max(0, (capacity - 1).bit_length())
    self.tree = np.zeros(2 * self.first_leaf, dtype=np.float64)

  @property
  def leaves(self) -> np.ndarray:
    return self.tree[self.first_leaf:self.first_leaf + self.capacity]

  @property
  def total(self) -> float:
    return float(self.tree[1])

  @property
  def nbytes(self) -> int:
    return self.tree.nbytes

  def set(self, idx: np.ndarray, values: np.ndarray) -> None:
    """Sets the priorities of leaves `idx` and re-sums their ancestors, one tree level at a time."""
    nodes = np.asarray(idx) + self.first_leaf
    self.tree[nodes] = values
    nodes = np.unique(nodes // 2)
    while nodes[0] >= 1:
      self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
      if nodes[0] == 1: break
      nodes = np.unique(nodes // 2)

  def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n leaf indices drawn with probability priority / total, one from each of n equal slices of the total
    (stratified, as in Schaul et al. 2016), and their probabilities."""
    total = self.total
    if not total > 0: raise ValueError("cannot sample: all priorities are zero")
    targets = (np.arange(n) + rng.random(n)) * (total / n)
    nodes = np.ones(n, dtype=np.int64)
    while nodes[0] < self.first_leaf:
      left = self.tree[2 * nodes]
      go_right = targets >= left
      targets = np.where(go_right, targets - left, targets)
      nodes = 2 * nodes + go_right
    # Rounding can step onto an empty leaf at the right edge: move such draws back to the last non-empty one.
    idx = np.minimum(nodes - self.first_leaf, self.capacity - 1)
    empty = self.leaves[idx] <= 0
    if empty.any(): idx[empty] = np.flatnonzero(self.leaves > 0)[-1]
    return idx, self.leaves[idx] / total
