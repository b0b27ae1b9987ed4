"""Videos of greedy episodes: frames from `render_mode="rgb_array"` (no display needed), written by imageio
(mp4 through imageio-ffmpeg, GIF through Pillow). The episodes are played by `evaluate`, so a video shows
exactly what `tinydqn eval` scores with the same seed."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym

from tinydqn.agent import DQNAgent
from tinydqn.envs import make_env
from tinydqn.errors import UserError, import_extra
from tinydqn.evaluate import EvalResult, evaluate

FORMATS = (".mp4", ".gif")


class FrameTap(gym.Wrapper):
  """Hands the frame after every reset and step to `write`, so a long episode is never held in memory."""

  def __init__(self, env: gym.Env, write: Callable[[Any], Any]):
    super().__init__(env)
    self._write, self.frames = write, 0

  def reset(self, **kwargs):
    out = self.env.reset(**kwargs)
    self._tap()
    return out

  def step(self, action):
    out = self.env.step(action)
    self._tap()
    return out

  def _tap(self) -> None:
    self._write(self.env.render())
    self.frames += 1


def record(agent: DQNAgent, env_id: str, path: str | Path, episodes: int = 1, seed: int = 0,
           fps: float | None = None, sticky_actions: float = 0.0) -> tuple[EvalResult, int]:
  """Plays `episodes` greedy episodes (episode i from seed `seed + i`) into a video; returns their result and
  the number of frames written (one per step plus the first frame of each episode). Pass the run's
  `sticky_actions`, as `tinydqn eval` does, or the video shows other episodes than the ones eval scores."""
  path = Path(path)
  if path.suffix.lower() not in FORMATS: raise UserError(f"video file must end in {' or '.join(FORMATS)}, got {path}")
  if episodes < 1: raise UserError(f"episodes must be >= 1, got {episodes}")
  imageio = import_extra("imageio", "video", "recording videos")
  if path.suffix.lower() == ".mp4": import_extra("imageio_ffmpeg", "video", "writing mp4")
  for var in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER"): os.environ.setdefault(var, "dummy")  # pygame: no window, no sound
  env = make_env(env_id, render_mode="rgb_array", sticky_actions=sticky_actions)
  if "rgb_array" not in env.metadata.get("render_modes", []):
    env.close()
    raise UserError(f"{env_id} cannot render frames (render_mode='rgb_array' is not supported)")
  fps = fps or env.metadata.get("render_fps") or 30
  # mp4: sizes only need to be even for yuv420p (the default 16 would rescale CartPole's 600x400 frames)
  options = {"fps": fps, "macro_block_size": 2} if path.suffix.lower() == ".mp4" else {"duration": 1000 / fps, "loop": 0}
  path.parent.mkdir(parents=True, exist_ok=True)
  try:
    with imageio.get_writer(path, **options) as writer:
      tap = FrameTap(env, writer.append_data)
      result = evaluate(agent, tap, episodes, seed)
  except gym.error.DependencyNotInstalled as e:
    path.unlink(missing_ok=True)
    raise UserError(f"rendering {env_id} needs a package that is not installed (pip install 'tinydqn[video]'): "
                    f"{str(e).strip().splitlines()[0]}") from None
  finally:
    env.close()
  return result, tap.frames
