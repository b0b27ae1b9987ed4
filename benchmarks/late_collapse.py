"""Would an averaged policy survive CartPole's late collapses? Trains the preset per seed, keeping the online weights
θ after every round of gradient steps, then plays 20 greedy episodes (as cartpole_seeds.py's final return) with
policies built from that one trajectory: the final θ (what training delivers), exponential averages of θ over the
last W env steps, uniform averages of the last N rounds' θ, and ensembles averaging the Q-values of K snapshots
G rounds apart. Acting while training reads θ either way, so every policy comes from the same run.

    DEV=CPU .venv/bin/python benchmarks/late_collapse.py --seeds 0-39 --jobs 2
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tinydqn.fast import use_fast_kernels

use_fast_kernels()  # as `tinydqn train` does; also in each spawned worker, which imports this first
from tinydqn.sweep import parse_seeds  # noqa: E402

EMA_STEPS = (5_120, 10_240, 20_480)
UNIFORM_ROUNDS = (20, 40)
ENSEMBLES = ((5, 4), (5, 8), (10, 4))  # (K snapshots, G rounds apart)
SOLVED = 475.0


class Policy:
  """What `evaluate` needs of an agent: greedy Q-values, here the mean over agents holding other weights."""
  def __init__(self, agents: list): self.agents = agents
  def q_values(self, obs: np.ndarray) -> np.ndarray: return np.mean([a.q_values(obs) for a in self.agents], axis=0)


def exponential_average(thetas: list[dict[str, np.ndarray]], weight: float) -> dict[str, np.ndarray]:
  average = {k: v.astype(np.float64) for k, v in thetas[0].items()}
  for theta in thetas[1:]:
    for k in average: average[k] += weight * (theta[k] - average[k])
  return {k: v.astype(np.float32) for k, v in average.items()}


def policies(thetas: list[dict[str, np.ndarray]], train_freq: int, agent_with: Callable) -> dict[str, Policy]:
  """Each policy's agents: `agent_with(θ)` is the trained agent with the online weights θ (acting in the
  library's own forward pass); a snapshot shared by several ensembles is loaded once."""
  snapshot = functools.cache(lambda rounds_back: agent_with(thetas[-1 - rounds_back]))
  out = {"final θ": Policy([snapshot(0)])}
  for steps in EMA_STEPS:
    out[f"exponential average, {steps} env steps"] = Policy([agent_with(exponential_average(thetas, train_freq / steps))])
  for n in UNIFORM_ROUNDS:
    out[f"mean of the last {n} rounds' θ"] = Policy([agent_with({k: np.mean([t[k] for t in thetas[-n:]], axis=0)
                                                                 for k in thetas[-1]})])
  for k, gap in ENSEMBLES: out[f"mean Q of {k} snapshots {gap} rounds apart"] = Policy([snapshot(j * gap) for j in range(k)])
  return out


def run_seed(seed: int, out: str) -> dict[str, float]:
  from tinydqn.agent import DQNAgent
  from tinydqn.checkpoint import load_checkpoint
  from tinydqn.config import make_config
  from tinydqn.envs import make_env
  from tinydqn.evaluate import evaluate
  from tinydqn.train import train
  thetas: list[dict[str, np.ndarray]] = []
  updates: Callable = DQNAgent.updates
  def recording(agent: DQNAgent, *args, **kwargs):
    stats = updates(agent, *args, **kwargs)
    thetas.append({k: v.copy() for k, v in agent.state_arrays().items() if k.startswith("online.")})
    return stats
  DQNAgent.updates = recording  # one call per round of gradient steps (no prioritized replay in these runs)
  config = make_config("CartPole-v1", seed=seed, checkpoint_freq=0)
  run_dir = train(config, run_dir=Path(out) / f"seed{seed}", force=True, progress=False).run_dir
  DQNAgent.updates = updates
  trained = load_checkpoint(run_dir)  # the final weights, target and optimizer: what each variant keeps but θ
  def agent_with(theta: dict[str, np.ndarray]) -> DQNAgent:
    agent = trained.make_agent()
    agent.load_state_dict({**trained.arrays, **theta})
    return agent
  return {name: evaluate(policy, make_env("CartPole-v1"), 20, config.eval_seed).mean_return
          for name, policy in policies(thetas, config.train_freq, agent_with).items()}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--seeds", default="0-39")
  ap.add_argument("--jobs", type=int, default=2)
  ap.add_argument("--out", default="benchmarks/results/late_collapse")
  args = ap.parse_args()
  seeds = parse_seeds(args.seeds)
  with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
    rows = list(pool.map(run_seed, seeds, [args.out] * len(seeds)))
  print(f"\nCartPole-v1 preset, seeds {args.seeds}: final greedy return over 20 episodes of policies from each run's θ\n")
  print("| policy | seeds ending >= 475 | seeds below |\n|---|---:|---|")
  for name in rows[0]:
    below = [s for s, r in zip(seeds, rows) if r[name] < SOLVED]
    print(f"| {name} | {len(seeds) - len(below)} of {len(seeds)} | {', '.join(map(str, below)) or '-'} |")


if __name__ == "__main__":
  main()
