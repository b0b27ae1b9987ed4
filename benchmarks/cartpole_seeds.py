"""Reliability of a preset across seeds: train each seed, then report the final greedy policy.

Per seed: the greedy return of the policy the run hands over (its final checkpoint: where a stop_at_return ended
the run, the policy that reached it) and of its best checkpoint, each over --final-episodes episodes from seeds
--final-seed + i, which no evaluation during training plays (those start at eval_seed, 10,000); the
first env step and wall-clock second at which a periodic greedy evaluation reached the task's "solved" mean
(--solved; CartPole-v1 475, Acrobot-v1 -100, MountainCar-v0 -110, LunarLander-v3 200), and env steps per
second. Prints a markdown table, then the IQM of the final returns with a 95% bootstrap interval.
Named for the task it was written for; --env tunes any preset the same way.

    python benchmarks/cartpole_seeds.py                      # default CartPole-v1 preset, seeds 0-9
    python benchmarks/cartpole_seeds.py --seeds 0-4 --jobs 1 --set double_q=true --set learning_rate=1e-3
    python benchmarks/cartpole_seeds.py --env Acrobot-v1 --set net_arch=[64,64]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tinydqn.fast import use_fast_kernels

use_fast_kernels()  # as `tinydqn train` does (HCQ2 for the CPU); also in each spawned worker, which imports this first
from presets_table import TASKS  # noqa: E402 (tinygrad must start after the line above)

from tinydqn.plot import bootstrap_ci, iqm  # noqa: E402
from tinydqn.sweep import parse_seeds  # noqa: E402  # "0-9", "0,3,5": the same syntax as `tinydqn sweep --seeds`

# the greedy mean return at which each task counts as solved: the preset table's
SOLVED = {task: solved for task, (_, solved, _) in TASKS.items()}


def parse_value(text: str):
  try: return json.loads(text)
  except json.JSONDecodeError: return text


def run_seed(env_id: str, preset: str | None, overrides: dict, seed: int, out: str, final_episodes: int,
             final_seed: int, solved: float) -> dict:
  from tinydqn_runner import judge, train_run  # the benchmarks' one way to train a run and play its policies

  from tinydqn.checkpoint import load_checkpoint
  from tinydqn.config import make_config
  config = make_config(env_id, preset, seed=seed, **overrides)
  result, evals = train_run(config, Path(out) / f"seed{seed}", force=True)
  final = judge(result.agent, env_id, final_episodes, final_seed)
  best = judge(load_checkpoint(result.run_dir, best=True).make_agent(), env_id, final_episodes, final_seed)
  first = next((e for e in evals if e["mean_return"] >= solved), None)
  return {"seed": seed, "final_return": final.mean_return, "final_std": final.std_return,
          "best_return": best.mean_return, "steps": result.steps,
          "solved_step": first["step"] if first else None, "solved_time": first["time_s"] if first else None,
          "sps": result.steps_per_second, "seconds": result.seconds}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--env", default="CartPole-v1")
  ap.add_argument("--preset", default=None, help="preset name (default: the one for --env)")
  ap.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5")
  ap.add_argument("--jobs", type=int, default=2, help="seeds trained in parallel (this machine has 2 cores)")
  ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override (JSON value)")
  ap.add_argument("--final-episodes", type=int, default=100)
  ap.add_argument("--final-seed", type=int, default=1_000_000, help="first seed of the judging episodes")
  ap.add_argument("--solved", type=float, help="greedy mean return that counts as solved (default: the task's)")
  ap.add_argument("--out", default="benchmarks/results/cartpole_seeds")
  args = ap.parse_args()
  overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
  if "net_arch" in overrides: overrides["net_arch"] = tuple(overrides["net_arch"])
  seeds = parse_seeds(args.seeds)
  solved = args.solved if args.solved is not None else SOLVED.get(args.env)
  if solved is None: ap.error(f"no solved threshold known for {args.env}: pass --solved")
  start = time.time()
  with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
    rows = list(pool.map(run_seed, *zip(*[(args.env, args.preset, overrides, s, args.out, args.final_episodes,
                                           args.final_seed, solved)
                                          for s in seeds])))
  print(f"\n{args.env} preset={args.preset or 'default'} overrides={overrides} jobs={args.jobs}\n")
  n = args.final_episodes
  print(f"| seed | handed over ({n} unseen ep) | best checkpoint ({n} unseen ep) | env steps run | "
        f"first eval >= {solved:g}: step | : wall s | env steps/s | run s |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    first = (f"{r['solved_step']}", f"{r['solved_time']:.1f}") if r["solved_step"] else ("never", "-")
    print(f"| {r['seed']} | {r['final_return']:.1f} ± {r['final_std']:.1f} | {r['best_return']:.1f} | {r['steps']} | "
          f"{first[0]} | {first[1]} | {r['sps']:.0f} | {r['seconds']:.1f} |")
  finals = [r["final_return"] for r in rows]
  print(f"\nbest checkpoints >= {solved:g}: {sum(r['best_return'] >= solved for r in rows)} of {len(rows)}")
  solved_steps = [r["solved_step"] for r in rows if r["solved_step"]]
  low, high = bootstrap_ci(np.array(finals, dtype=np.float64), "iqm")
  print(f"handed over >= {solved:g}: {sum(f >= solved for f in finals)} of {len(rows)}; "
        f"final return IQM {float(iqm(np.array(finals))):.1f} [{low:.1f}, {high:.1f}], median {statistics.median(finals):.1f}; "
        f"median first-solve step {statistics.median(solved_steps) if solved_steps else 'n/a'}; "
        f"median env steps/s {statistics.median(r['sps'] for r in rows):.0f}; total {time.time() - start:.0f} s")


if __name__ == "__main__":
  main()
