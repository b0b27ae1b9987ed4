"""Greedy evaluation (ε = 0) on a separate environment with fixed episode seeds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

from tinydqn.agent import DQNAgent


@dataclass(frozen=True)
class EvalResult:
  returns: tuple[float, ...]
  lengths: tuple[int, ...]

  @property
  def mean_return(self) -> float: return float(np.mean(self.returns))

  @property
  def std_return(self) -> float: return float(np.std(self.returns))

  def to_dict(self) -> dict:
    return {"mean_return": self.mean_return, "std_return": self.std_return, "episodes": len(self.returns),
            "min_return": float(np.min(self.returns)), "max_return": float(np.max(self.returns)),
            "returns": list(self.returns), "lengths": list(self.lengths)}


# An evaluation episode ends after this many steps when its env sets no time limit of its own (CliffWalking, say,
# where a greedy policy can walk into a wall forever): the ALE's default cap, 108,000 steps (30 minutes of play).
DEFAULT_MAX_EPISODE_STEPS = 108_000


class EvaluationStopped(Exception):
  """`should_stop` said so in the middle of an evaluation (a stop signal reached the training loop)."""


def max_episode_steps(env: gym.Env) -> int:
  """The env's own time limit where it has one, else DEFAULT_MAX_EPISODE_STEPS."""
  spec = getattr(env, "spec", None)
  return (spec.max_episode_steps if spec is not None else None) or DEFAULT_MAX_EPISODE_STEPS


def evaluate(agent: DQNAgent, env: gym.Env, episodes: int, seed: int,
             should_stop: Callable[[], bool] | None = None) -> EvalResult:
  """Plays `episodes` greedy episodes; episode i starts from `env.reset(seed=seed + i)` and ends at a terminal,
  a truncation or `max_episode_steps(env)` steps. `should_stop`, asked every 1,000 steps, raises
  EvaluationStopped when it answers True."""
  returns, lengths, cap = [], [], max_episode_steps(env)
  for i in range(episodes):
    obs, _ = env.reset(seed=seed + i)
    total, length, done = 0.0, 0, False
    while not done:
      action = int(agent.q_values(obs[None]).argmax())
      obs, reward, terminated, truncated, _ = env.step(action)
      total, length = total + float(reward), length + 1
      done = terminated or truncated or length >= cap
      if should_stop is not None and length % 1000 == 0 and should_stop(): raise EvaluationStopped
    returns.append(total)
    lengths.append(length)
  return EvalResult(tuple(returns), tuple(lengths))
