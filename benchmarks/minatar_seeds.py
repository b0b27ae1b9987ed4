"""MinAtar learning curves: the `minatar` preset (Young & Tian 2019's DQN) on several games and seeds, within a
CPU budget set by --steps (the paper trains for 5M frames; a CPU run here affords far fewer).

Prints, per game, the mean training return of the last 100 episodes at the end (the paper's measure is a
running average of training returns) and the final greedy evaluation, per seed and as a median.

    .venv/bin/python benchmarks/minatar_seeds.py --games Breakout,SpaceInvaders --seeds 0,1,2 --steps 20000
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--games", default="Breakout,SpaceInvaders")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--steps", type=int, default=20_000)
  ap.add_argument("--train-freq", type=int, default=1, help="the paper: 1 (a gradient step per frame)")
  args = ap.parse_args()
  from tinydqn.config import make_config
  from tinydqn.train import train
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for game in args.games.split(","):
      for seed in map(int, args.seeds.split(",")):
        # ε anneals over the paper's first 100k frames, or the first half of a shorter run
        config = make_config(f"MinAtar/{game}-v1", seed=seed, total_timesteps=args.steps, train_freq=args.train_freq,
                             exploration_fraction=min(0.5, 100_000 / args.steps), eval_freq=0, eval_episodes=10,
                             checkpoint_freq=0, learning_starts=min(5_000, args.steps // 10))
        t = time.perf_counter()
        result = train(config, run_dir=Path(tmp) / f"{game}-{seed}", progress=False)
        with open(Path(tmp) / f"{game}-{seed}" / "metrics.csv") as f:
          returns = [float(r["episodic_return"]) for r in csv.DictReader(f)]
        rows.append((game, seed, statistics.mean(returns[-100:]), result.final_eval.mean_return,
                     time.perf_counter() - t, result.steps_per_second))
        print(rows[-1], flush=True)
  print(f"\n{args.steps:,} env steps per run, train_freq {args.train_freq}\n")
  print("| game | seed | training return (last 100 episodes) | greedy eval (10 episodes) | seconds | steps/s |")
  print("|---|---:|---:|---:|---:|---:|")
  for game, seed, train_ret, eval_ret, secs, sps in rows:
    print(f"| {game} | {seed} | {train_ret:.2f} | {eval_ret:.2f} | {secs:.0f} | {sps:.0f} |")
  for game in args.games.split(","):
    mine = [r for r in rows if r[0] == game]
    print(f"| {game} | median | {statistics.median(r[2] for r in mine):.2f} | {statistics.median(r[3] for r in mine):.2f} | | |")


if __name__ == "__main__":
  main()
