"""Replay memory: capacity, wrap-around, dtypes, terminated vs truncated, uniform sampling."""
import numpy as np
import pytest

from tinydqn.buffers import Batch, ReplayBuffer


def test_ring_wraps_and_keeps_the_newest():
  buf = ReplayBuffer(5, (2,), np.float32)
  for i in range(12):
    buf.add(np.full((1, 2), i), [i % 3], [float(i)], np.full((1, 2), i + 1), [i == 11], [i == 7])
  assert len(buf) == 5 and buf.pos == 12 % 5
  stored = sorted(buf.rewards.tolist())
  assert stored == [7.0, 8.0, 9.0, 10.0, 11.0]  # 0..6 were overwritten, oldest first
  for row in range(5):
    i = int(buf.rewards[row])
    assert buf.obs[row, 0] == i and buf.next_obs[row, 0] == i + 1 and buf.actions[row] == i % 3
    assert buf.terminated[row] == (i == 11) and buf.truncated[row] == (i == 7)


def test_observation_dtype_is_kept():
  buf = ReplayBuffer(4, (3, 3), np.uint8)
  buf.add(np.full((1, 3, 3), 255, np.uint8), [1], [1.0], np.zeros((1, 3, 3), np.uint8), [False], [False])
  assert buf.obs.dtype == np.uint8 and buf.obs.nbytes == 4 * 9
  out = Batch.empty(2, (3, 3), np.dtype(np.uint8))
  buf.sample_into(out, np.random.default_rng(0))
  assert out.obs.dtype == np.uint8 and (out.obs == 255).all()


def test_sampling_only_sees_stored_rows_and_is_uniform():
  buf = ReplayBuffer(1000, (1,), np.float32, num_envs=10)
  buf.add(np.arange(10)[:, None], np.zeros(10), np.arange(10), np.arange(10)[:, None], np.zeros(10), np.zeros(10))
  rng = np.random.default_rng(0)
  counts = np.bincount(np.concatenate([buf.sample_indices(100, rng) for _ in range(400)]), minlength=10)
  assert len(counts) == 10  # never an empty slot beyond the fill level
  chi2 = ((counts - 4000) ** 2 / 4000).sum()
  assert chi2 < 27.9  # chi-square, 9 degrees of freedom, p = 0.001


def test_sample_into_gathers_matching_rows():
  buf = ReplayBuffer(50, (2,), np.float32)
  for i in np.arange(80)[:, None]:
    buf.add(np.stack([i, -i], 1), i % 2, i, np.stack([i + 1, -i - 1], 1), i % 5 == 0, np.zeros(1))
  out = Batch.empty(16, (2,), np.dtype(np.float32))
  idx = buf.sample_into(out, np.random.default_rng(1))
  np.testing.assert_array_equal(out.obs, buf.obs[idx])
  np.testing.assert_array_equal(out.next_obs[:, 0], out.rewards + 1)
  np.testing.assert_array_equal(out.actions, out.rewards.astype(int) % 2)
  np.testing.assert_array_equal(out.discounts, np.where(out.rewards.astype(int) % 5 == 0, 0.0, np.float32(0.99)))
  np.testing.assert_array_equal(out.weights, 1.0)


def test_terminal_fraction_sets_apart_terminated_transitions_and_follows_new_ones():
  buf = ReplayBuffer(100, (1,), np.float32, terminal_fraction=0.25)
  for i in range(40): buf.add(np.array([[i]]), [0], [i], np.array([[i + 1]]), [i % 10 == 9], [i % 10 == 4])
  rng = np.random.default_rng(0)
  idx = np.concatenate([buf.sample_indices(8, rng)[:2] for _ in range(200)])
  assert set(idx) == {9, 19, 29, 39}  # the first quarter of each minibatch: terminated transitions only
  buf.add(np.array([[40]]), [0], [40], np.array([[41]]), [True], [False])
  assert 40 in buf.sample_indices(800, rng)[:200]
  full = ReplayBuffer(4, (1,), np.float32, terminal_fraction=0.5)  # a whole ring's turn between two draws
  for end in (0, 1):
    for i in range(4): full.add(np.array([[i]]), [0], [i], np.array([[i + 1]]), [i == end], [False])
    assert set(full.sample_indices(8, rng)[:4]) == {end}
  no_ends = ReplayBuffer(100, (1,), np.float32, terminal_fraction=0.25)
  no_ends.add(np.array([[0]]), [0], [0], np.array([[1]]), [False], [False])
  np.testing.assert_array_equal(no_ends.sample_indices(8, rng), 0)  # none stored yet: uniform


def test_empty_buffer_cannot_be_sampled():
  with pytest.raises(ValueError): ReplayBuffer(3, (1,), np.float32).sample_indices(2, np.random.default_rng(0))


def test_batch_insert_wraps_around_the_ring():
  buf = ReplayBuffer(5, (1,), np.float32, num_envs=2)
  assert buf.capacity == 6  # whole rows of one transition per env
  for t in range(4): buf.add(np.zeros((2, 1)), [t, t], [2 * t, 2 * t + 1], np.zeros((2, 1)), [0, t == 3], [0, 0])
  assert len(buf) == 6 and buf.pos == 2
  assert buf.rewards.tolist() == [6, 7, 2, 3, 4, 5] and buf.terminated.tolist() == [0, 1, 0, 0, 0, 0]
  with pytest.raises(ValueError): buf.add(np.zeros((3, 1)), [0] * 3, [0] * 3, np.zeros((3, 1)), [0] * 3, [0] * 3)
