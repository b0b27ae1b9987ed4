"""How a CartPole-v1 policy ends its episodes: for each run directory's final checkpoint, ten greedy episodes and
why each ended (the cart out of bounds, the pole past its angle, or the 500-step limit), with the step, the
cart's final position and the policy's Q-values at the origin (the largest possible value is 1/(1 − γ)).

    .venv/bin/python benchmarks/cartpole_failures.py benchmarks/results/cartpole_seeds/seed0 ...
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

from tinydqn.checkpoint import load_checkpoint

def episode_end(agent, env: gym.Env, seed: int) -> tuple[int, str, float]:
  """(steps, why it ended, cart position at the end) of one greedy episode."""
  obs, _ = env.reset(seed=seed)
  step, terminated, truncated = 0, False, False
  while not (terminated or truncated):  # the env's time limit ends every episode
    obs, _, terminated, truncated, _ = env.step(int(agent.q_values(obs[None])[0].argmax()))
    step += 1
  limits = env.unwrapped  # CartPole's termination thresholds
  off_track, fallen = abs(obs[0]) > limits.x_threshold, abs(obs[2]) > limits.theta_threshold_radians
  why = "limit" if not terminated else "cart" if off_track else "pole" if fallen else "?"
  return step, why, float(obs[0])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("runs", nargs="+", help="run directories (or checkpoint paths)")
  ap.add_argument("--episodes", type=int, default=10)
  args = ap.parse_args()
  print("| run | Q at the origin | episodes: steps, why, cart x at the end |\n|---|---|---|")
  for run in args.runs:
    agent = load_checkpoint(run).make_agent()
    env = gym.make("CartPole-v1")
    ends = [episode_end(agent, env, 10_000 + i) for i in range(args.episodes)]
    q = agent.q_values(np.zeros((1, 4), np.float32))[0]
    print(f"| {run} | {', '.join(f'{v:.1f}' for v in q)} | {'; '.join(f'{n} {why} {x:+.2f}' for n, why, x in ends)} |")


if __name__ == "__main__":
  main()
