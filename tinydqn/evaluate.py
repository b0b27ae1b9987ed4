"""Greedy evaluation (ε = 0) on a separate environment with fixed episode seeds."""
from __future__ import annotations

from dataclasses import dataclass

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


def evaluate(agent: DQNAgent, env: gym.Env, episodes: int, seed: int) -> EvalResult:
  """Plays `episodes` greedy episodes; episode i starts from `env.reset(seed=seed + i)`."""
  returns, lengths = [], []
  for i in range(episodes):
    obs, _ = env.reset(seed=seed + i)
    total, length, done = 0.0, 0, False
    while not done:
      action = int(agent.q_values(obs[None]).argmax())
      obs, reward, terminated, truncated, _ = env.step(action)
      total, length, done = total + float(reward), length + 1, terminated or truncated
    returns.append(total)
    lengths.append(length)
  return EvalResult(tuple(returns), tuple(lengths))
