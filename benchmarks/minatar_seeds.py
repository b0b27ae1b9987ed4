"""MinAtar learning curves: the `minatar` preset (Young & Tian 2019's DQN) on several games and seeds, within a
CPU budget set by --steps (the paper trains for 5M frames; a CPU run here affords far fewer). `--preset rainbow`
trains Rainbow instead (the `minatar` preset, then `rainbow`, then the minatar preset's `[rainbow]` table), and
`--against` draws kept runs of another OUT (the DQN ones) in the same figures.

Runs are kept in OUT/GAME/seedN (ordinary run directories: `tinydqn plot` and `tinydqn evaluate` read them), and
a finished run is not run again, so an interrupted benchmark continues where it stopped. Prints, per game, the
mean training return of the last 100 episodes (the paper's measure is a running average of training returns)
and the greedy evaluations, per seed and as a median, and writes one PNG of greedy return per game.

    .venv/bin/python benchmarks/minatar_seeds.py --games Breakout,SpaceInvaders --seeds 0,1,2 --steps 100000
    .venv/bin/python benchmarks/minatar_seeds.py --games Breakout --steps 200000 --eval-freq 25000 --preset rainbow \
        --against benchmarks/results/minatar
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent


def run(game: str, seed: int, steps: int, train_freq: int, eval_freq: int, out: Path, preset: str | None = None) -> dict:
  from tinydqn.config import make_config
  from tinydqn.errors import UserError
  from tinydqn.rundir import check_same_config
  from tinydqn.train import train
  run_dir = out / game / f"seed{seed}"
  # ε anneals over the paper's first 100k frames, or the first half of a shorter run
  config = make_config(f"MinAtar/{game}-v1", preset, seed=seed, total_timesteps=steps, train_freq=train_freq,
                       exploration_fraction=min(0.5, 100_000 / steps), eval_freq=eval_freq, eval_episodes=10,
                       checkpoint_freq=0, learning_starts=min(5_000, steps // 10))
  try: check_same_config(run_dir, config)  # a kept run of other settings (--steps, --train-freq, the preset ...)
  except UserError as e: raise SystemExit(f"{e} (--out)") from None
  if not (run_dir / "summary.json").is_file(): train(config, run_dir=run_dir, progress=False, force=run_dir.exists())
  summary = json.loads((run_dir / "summary.json").read_text())
  with open(run_dir / "metrics.csv") as f: returns = [float(r["episodic_return"]) for r in csv.DictReader(f)]
  with open(run_dir / "eval.csv") as f: evals = [(int(r["step"]), float(r["mean_return"])) for r in csv.DictReader(f)]
  return {"game": game, "seed": seed, "run_dir": run_dir, "train_return": statistics.mean(returns[-100:]),
          "evals": evals, "seconds": summary["seconds"], "sps": summary["steps_per_second"]}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--games", default="Breakout,SpaceInvaders")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("--steps", type=int, default=100_000)
  ap.add_argument("--train-freq", type=int, default=1, help="the paper: 1 (a gradient step per frame)")
  ap.add_argument("--eval-freq", type=int, default=20_000, help="greedy evaluation (10 episodes) every this many steps")
  ap.add_argument("--preset", default=None, help="a modifier preset, e.g. rainbow")
  ap.add_argument("--out", type=Path, default=None, help="[default: results/minatar beside this script, -PRESET]")
  ap.add_argument("--against", type=Path, default=None, help="another OUT whose kept runs of each game join its figure")
  ap.add_argument("--figures", type=Path, default=HERE / "figures")
  args = ap.parse_args()
  from tinydqn.plot import plot_runs
  games, seeds = args.games.split(","), [int(s) for s in args.seeds.split(",")]
  name = "minatar" + (f"-{args.preset}" if args.preset else "")
  out = args.out or HERE / "results" / name
  rows = []
  for game in games:
    for seed in seeds:
      rows.append(run(game, seed, args.steps, args.train_freq, args.eval_freq, out, args.preset))
      r = rows[-1]
      print(f"{game} seed {seed}: training return {r['train_return']:.2f}, greedy {r['evals'][-1][1]:.2f}, "
            f"{r['seconds']:.0f} s", flush=True)
  print(f"\n{args.steps:,} env steps per run, train_freq {args.train_freq}, greedy evaluation of 10 episodes every "
        f"{args.eval_freq:,} steps\n")
  steps = [s for s, _ in rows[0]["evals"]]
  print("| game | seed | training return (last 100 episodes) | " + " | ".join(f"greedy @ {s:,}" for s in steps)
        + " | seconds | steps/s |")
  print("|---|---:|---:|" + "---:|" * len(steps) + "---:|---:|")
  for r in rows:
    print(f"| {r['game']} | {r['seed']} | {r['train_return']:.2f} | " + " | ".join(f"{v:.2f}" for _, v in r["evals"])
          + f" | {r['seconds']:.0f} | {r['sps']:.0f} |")
  for game in games:
    mine = [r for r in rows if r["game"] == game]
    medians = [statistics.median(r["evals"][i][1] for r in mine) for i in range(len(steps))]
    print(f"| {game} | median | {statistics.median(r['train_return'] for r in mine):.2f} | "
          + " | ".join(f"{m:.2f}" for m in medians) + " | | |")
    run_dirs, labels = [r["run_dir"] for r in mine], [args.preset or "DQN"] * len(mine)
    if args.against:
      others = sorted(d for d in (args.against / game).glob("seed*") if (d / "summary.json").is_file())
      run_dirs, labels = others + run_dirs, ["DQN"] * len(others) + labels
    figure = plot_runs(run_dirs, args.figures / f"{name}_{game.lower()}.png", agg="median", labels=labels,
                       title=f"MinAtar {game}: greedy return, median of seeds")
    print(f"wrote {figure}")


if __name__ == "__main__":
  main()
