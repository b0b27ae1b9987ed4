"""Environment creation with the checks DQN needs, and one-line errors for what cannot work."""
from __future__ import annotations

import difflib
from functools import partial

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import FlattenObservation, ReshapeObservation, TransformAction

from tinydqn.atari import is_atari, is_minatar, make_pixel_env
from tinydqn.errors import UserError


def make_env(env_id: str, render_mode: str | None = None, sticky_actions: float = 0.0) -> gym.Env:
  """`gym.make(env_id)`, checked for a Discrete action space; non-Box observations are flattened
  (a Discrete observation becomes a one-hot vector). Atari ids get the Nature DQN's preprocessing and MinAtar
  ids their own frames (tinydqn.atari), both with `sticky_actions`."""
  try:
    if is_atari(env_id) or is_minatar(env_id): env = make_pixel_env(env_id, render_mode, sticky_actions)
    else: env = gym.make(env_id, render_mode=render_mode)
  except gym.error.DependencyNotInstalled as e:
    extra = "box2d" if "box2d" in str(e).lower() else None
    hint = f'pip install "tinydqn[{extra}]"' if extra else "install the package it names"
    raise UserError(f"{env_id} needs a dependency that is not installed ({hint}): {_first_line(e)}") from None
  except gym.error.Error as e:
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown environment {env_id!r} ({_first_line(e)}){hint}") from None
  action_space = env.action_space
  if not isinstance(action_space, spaces.Discrete):
    env.close()
    raise UserError(f"{env_id} has action space {action_space}: DQN needs a Discrete action space")
  if int(action_space.start) != 0:  # the agent picks indices 0..n-1
    start = int(action_space.start)
    env = TransformAction(env, lambda a: start + a, spaces.Discrete(int(action_space.n)))
  if not isinstance(env.observation_space, spaces.Box):
    try:
      env = FlattenObservation(env)
    except NotImplementedError:
      env.close()
      raise UserError(f"{env_id} has observation space {env.observation_space}, which cannot be flattened") from None
  shape = env.observation_space.shape
  if shape is None or not all(isinstance(n, int) and n > 0 for n in shape):  # e.g. a flattened Sequence or Graph
    env.close()
    raise UserError(f"{env_id} has observation space {env.observation_space}: DQN needs observations of a fixed shape")
  if shape == (): env = ReshapeObservation(env, (1,))  # a scalar Box: one feature, as a batch of vectors needs
  return env


def make_vector_env(env_id: str, num_envs: int, sticky_actions: float = 0.0) -> LeanSyncVectorEnv:
  """`num_envs` copies of `make_env(env_id)` stepped together. Same-step autoreset: an env that finishes
  returns the next episode's first observation, and the true last one in info["final_obs"]. make_env's
  UserErrors come straight out of the constructor, which builds the envs.

  copy=False: reset and step return the vector env's own observation array, overwritten by the next step; a
  caller that keeps an observation copies it (a deep copy per step is most of what copy=True costs)."""
  return LeanSyncVectorEnv([partial(make_env, env_id, sticky_actions=sticky_actions) for _ in range(num_envs)],
                           autoreset_mode=AutoresetMode.SAME_STEP, copy=False)


class LeanSyncVectorEnv(SyncVectorEnv):
  """Gymnasium's SyncVectorEnv with a shorter `step` for what `make_vector_env` builds (Box observations, same-step
  autoreset, copy=False): the same results, without the generic per-step work (an iterator over the action space,
  merging each env's info dict even when it is empty, stacking observations through the space). For CartPole that
  work cost more than the environment's own step (BENCHMARKS.md, "The loop's host work")."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if not isinstance(self.single_observation_space, spaces.Box) or self.autoreset_mode != AutoresetMode.SAME_STEP:
      raise ValueError("LeanSyncVectorEnv steps Box observations with same-step autoreset only")

  def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    infos: dict = {}
    for i, env in enumerate(self.envs):
      obs, self._rewards[i], self._terminations[i], self._truncations[i], info = env.step(actions[i])
      if self._terminations[i] or self._truncations[i]:
        infos = self._add_info(infos, {"final_obs": obs, "final_info": info}, i)
        obs, info = env.reset()
      self._env_obs[i] = self._observations[i] = obs
      if info: infos = self._add_info(infos, info, i)
    self._autoreset_envs = self._terminations | self._truncations
    return self._observations, self._rewards.copy(), self._terminations.copy(), self._truncations.copy(), infos


def last_observations(next_obs: np.ndarray, infos: dict, done: np.ndarray) -> np.ndarray:
  """φ_{t+1} per env: the observation the step really ended in, also for envs that were just reset."""
  if "final_obs" not in infos: return next_obs  # no env ended (cheaper to ask than done.any())
  real = next_obs.copy()
  for i in np.flatnonzero(done): real[i] = infos["final_obs"][i]
  return real


def describe(env: gym.Env) -> tuple[tuple[int, ...], np.dtype, int]:
  """(observation shape, observation dtype, number of actions) of a checked environment."""
  return tuple(env.observation_space.shape), np.dtype(env.observation_space.dtype), int(env.action_space.n)


def _first_line(e: BaseException) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0]
