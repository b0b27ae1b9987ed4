"""Atari (ALE) and MinAtar environments: the Nature DQN's preprocessing, life loss as a training terminal,
and reward clipping. Gymnasium's own wrappers do the preprocessing; this module only picks their settings.

Sticky actions (Machado et al. 2018: the emulator repeats the previous action with probability p) come from
the config's `sticky_actions` for every id, never from the id's registered default: ALE v5 ids default to
0.25 and NoFrameskip-v4 ids to 0, so the same game would otherwise differ by its id. The `atari` preset uses
0, the Nature DQN's setting (and CleanRL's and the zoo's, whose published scores are on NoFrameskip-v4);
the `minatar` preset uses MinAtar's own 0.1, as in its paper.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from tinydqn.errors import UserError

FRAME_STACK = 4  # the Nature DQN's φ: the last 4 preprocessed frames


def is_atari(env_id: str) -> bool:
  return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


def is_minatar(env_id: str) -> bool:
  return env_id.startswith("MinAtar/")


def make_pixel_env(env_id: str, render_mode: str | None = None, sticky_actions: float = 0.0) -> gym.Env:
  """An Atari env with the Nature preprocessing, or a MinAtar env as it is (10×10×k boolean frames)."""
  if is_minatar(env_id):
    try:
      import minatar.gym
    except ImportError:
      raise UserError(f"{env_id} needs MinAtar: pip install 'tinydqn[minatar]'") from None
    if env_id not in gym.registry: minatar.gym.register_envs()
    return gym.make(env_id, render_mode=render_mode, sticky_action_prob=sticky_actions)
  try:
    import ale_py
  except ImportError:
    raise UserError(f"{env_id} needs the Arcade Learning Environment: pip install 'tinydqn[atari]'") from None
  gym.register_envs(ale_py)
  ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr for every env made
  # v5 ids skip 4 frames inside the ALE by default; AtariPreprocessing must do it to max-pool the last two.
  kwargs = {"frameskip": 1} if env_id.startswith("ALE/") else {}
  try:
    env = gym.make(env_id, render_mode=render_mode, repeat_action_probability=sticky_actions,
                   full_action_space=False, **kwargs)
  except (OSError, RuntimeError) as e:  # the ALE could not load the ROM (missing, unreadable, wrong hash)
    raise UserError(f"{env_id}: the ALE cannot load its ROM: {' '.join(str(e).split())}") from None
  env = KeepEmulatorState(env)
  # No-op starts up to 30, frame skip 4 with the max of the last two frames, 84×84 greyscale uint8. The game
  # is never reset at a life loss here: `life_loss_terminals` marks those transitions in training instead.
  env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True,
                           terminal_on_life_loss=False, scale_obs=False)
  if "FIRE" in env.unwrapped.get_action_meanings(): env = FireReset(env)
  return FrameStackObservation(env, FRAME_STACK)  # padded with the first frame at each reset


class KeepEmulatorState(gym.Wrapper):
  """Makes a pickled Atari env continue the same game: ale_py's AtariEnv pickles only its constructor arguments
  (a new game on unpickling), so this adds the emulator's state, RNG included, and the env's numpy RNG (the
  no-op starts draw from it). Snapshots pickle the envs; with this a resumed run is exact."""

  def __getstate__(self):
    game = self.env.unwrapped
    return {**self.__dict__, "_emulator": game.ale.cloneState(include_rng=True),
            "_np_random": game.np_random.bit_generator.state}

  def __setstate__(self, state):
    emulator, rng = state.pop("_emulator"), state.pop("_np_random")
    self.__dict__.update(state)
    self.env.unwrapped.ale.restoreState(emulator)
    self.env.unwrapped.np_random.bit_generator.state = rng


class FireReset(gym.Wrapper):
  """Presses FIRE after each reset and each lost life, for games that wait for it to (re)launch play (Breakout
  would otherwise idle until the agent learns to press it, and a greedy evaluation could stall for a whole
  27k-step game). CleanRL and SB3 do the same in effect: their life-loss resets go through their FireReset."""

  def reset(self, **kwargs):
    self.env.reset(**kwargs)
    obs, _, terminated, truncated, info = self.env.step(self._fire())
    if terminated or truncated: return self.env.reset(**kwargs)
    return obs, info

  def step(self, action):
    lives = self.env.unwrapped.ale.lives()
    obs, reward, terminated, truncated, info = self.env.step(action)
    if not (terminated or truncated) and info["lives"] < lives:
      obs, more, terminated, truncated, info = self.env.step(self._fire())
      reward += more
    return obs, reward, terminated, truncated, info

  def _fire(self) -> int:
    return self.env.unwrapped.get_action_meanings().index("FIRE")


def life_loss_terminals(terminated: np.ndarray, infos: dict, lives: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
  """(terminated for the replay memory, lives now): a transition that lost a life is stored as terminal, as
  in the Nature DQN's training, while the game goes on (Gymnasium's terminal_on_life_loss would reset it).
  `lives` is the count before the step (None when the env reports none). After an autoreset, infos["lives"]
  is the new game's count, which is higher: no loss."""
  now = infos.get("lives")
  if now is None or lives is None: return terminated, now
  return terminated | (now < lives), now


def clip_rewards(rewards: np.ndarray) -> np.ndarray:
  """The Nature DQN's reward clipping to [−1, 1] (their rewards are integers: the sign)."""
  return np.clip(rewards, -1.0, 1.0)


def stacks_frames(env: gym.Env) -> bool:
  """Whether `env` returns stacks of uint8 frames padded with the episode's first frame (what
  FrameReplayBuffer stores once per frame)."""
  outer = env.observation_space
  while isinstance(env, gym.Wrapper):
    if isinstance(env, FrameStackObservation):  # and no wrapper above it changed the observations
      return env.padding_type == "reset" and env.observation_space == outer and outer.dtype == np.uint8
    env = env.env
  return False
