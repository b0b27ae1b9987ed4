"""FrameReplayBuffer rebuilds exactly the stacks a naive buffer of full stacks stores, episodes and ring included."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import FrameStackObservation, TimeLimit

from tinydqn.buffers import Batch, ReplayBuffer
from tinydqn.envs import last_observations
from tinydqn.frame_buffer import FrameReplayBuffer


class RandomFrames(gym.Env):
  """Random 3×3 uint8 frames; episodes end (terminated) with probability 0.15 per step, some by a time limit."""
  observation_space = gym.spaces.Box(0, 255, (3, 3), np.uint8)
  action_space = gym.spaces.Discrete(3)

  def reset(self, seed=None, options=None):
    super().reset(seed=seed)
    return self._frame(), {}

  def step(self, action):
    return self._frame(), float(self.np_random.normal()), bool(self.np_random.random() < 0.15), False, {}

  def _frame(self):
    return self.np_random.integers(0, 256, (3, 3), dtype=np.uint8)


def stacked_env(max_steps: int):
  return lambda: FrameStackObservation(TimeLimit(RandomFrames(), max_steps), 4)


def assert_same_batches(naive: ReplayBuffer, frames: FrameReplayBuffer) -> None:
  idx = np.arange(len(naive))
  a, b = Batch.empty(len(idx), (4, 3, 3), np.dtype(np.uint8)), Batch.empty(len(idx), (4, 3, 3), np.dtype(np.uint8))
  naive.gather_into(idx, a)
  frames.gather_into(idx, b)
  for name in ("obs", "next_obs", "actions", "rewards", "discounts"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("num_envs,n_step,capacity", [(1, 1, 50), (1, 3, 37), (3, 1, 60), (3, 3, 31), (2, 3, 2)])
def test_stacks_match_a_naive_buffer_of_full_stacks(num_envs, n_step, capacity):
  envs = SyncVectorEnv([stacked_env(m) for m in (9, 23, 5)[:num_envs]], autoreset_mode=AutoresetMode.SAME_STEP)
  kw = dict(num_envs=num_envs, n_step=n_step, gamma=0.9)
  naive, frames = ReplayBuffer(capacity, (4, 3, 3), np.uint8, **kw), FrameReplayBuffer(capacity, (4, 3, 3), np.uint8, **kw)
  rng = np.random.default_rng(num_envs * 10 + n_step)
  obs, _ = envs.reset(seed=n_step)
  for t in range(250 // num_envs):  # several wraps of the ring, episodes of random lengths
    actions = rng.integers(3, size=num_envs)
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    real = last_observations(next_obs, infos, terminated | truncated)
    for buf in (naive, frames): buf.add(obs, actions, rewards, real, terminated, truncated)
    obs = next_obs
    if t % 7 == 0 or t < 10: assert_same_batches(naive, frames)
  assert frames.frames.nbytes == frames.capacity * 9  # one frame per transition


def test_state_dict_round_trip_keeps_the_stacks():
  envs = SyncVectorEnv([stacked_env(6), stacked_env(11)], autoreset_mode=AutoresetMode.SAME_STEP)
  buf = FrameReplayBuffer(20, (4, 3, 3), np.uint8, num_envs=2, n_step=3, prioritized=True)
  obs, _ = envs.reset(seed=0)
  for _ in range(37):
    next_obs, rewards, terminated, truncated, infos = envs.step(np.zeros(2, int))
    buf.add(obs, np.zeros(2), rewards, last_observations(next_obs, infos, terminated | truncated), terminated, truncated)
    obs = next_obs
  copy = FrameReplayBuffer(20, (4, 3, 3), np.uint8, num_envs=2, n_step=3, prioritized=True)
  copy.load_state_dict({k: np.array(v) for k, v in buf.state_dict().items()})
  a, b = Batch.empty(16, (4, 3, 3), np.dtype(np.uint8)), Batch.empty(16, (4, 3, 3), np.dtype(np.uint8))
  np.testing.assert_array_equal(buf.sample_into(a, np.random.default_rng(1)), copy.sample_into(b, np.random.default_rng(1)))
  for name in ("obs", "next_obs", "rewards", "discounts", "weights"): np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_rejects_observations_that_are_not_frame_stacks():
  buf = FrameReplayBuffer(8, (2, 1), np.uint8)
  with pytest.raises(ValueError, match="shifted"):
    buf.add(np.array([[[1], [2]]]), [0], [0.0], np.array([[[5], [3]]]), [False], [False])
  buf.add(np.array([[[1], [2]]]), [0], [0.0], np.array([[[2], [3]]]), [False], [False])
  with pytest.raises(ValueError, match="start an episode"):  # neither the continuation nor a fresh start
    buf.add(np.array([[[7], [8]]]), [0], [0.0], np.array([[[8], [9]]]), [False], [False])
