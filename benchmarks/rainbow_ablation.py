"""Rainbow ablation: plain DQN (the env's preset), each component switched on alone, and all of them.

Every variant runs on the same seeds, over the whole budget; per variant the table gives the median and IQR of the
final greedy return (20 episodes), of the first env step at which a periodic greedy evaluation reached the solve
threshold, and the wall-clock cost per env step relative to plain DQN. Finished runs are kept
(OUT/VARIANT/seedN/row.json), so an interrupted benchmark continues where it stopped.

    python benchmarks/rainbow_ablation.py                                   # CartPole-v1, all variants, seeds 0-9
    python benchmarks/rainbow_ablation.py --env Acrobot-v1 --solved -100 --variants plain,rainbow --seeds 0-2
    python benchmarks/rainbow_ablation.py --variants rainbow --seeds 0,1,4,5 --set adam_eps=1.5e-4
    python benchmarks/rainbow_ablation.py --variants plain,distributional,qrdqn   # DQN, C51 and QR-DQN
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import cartpole_seeds
from tinydqn.sweep import parse_seeds

VARIANTS = {  # name: (preset applied on top of the env's, config overrides)
  "plain": (None, {}),
  "n_step": (None, {"n_step": 3}),
  "prioritized": (None, {"prioritized": True}),
  "dueling": (None, {"dueling": True}),
  "noisy": (None, {"noisy": True}),
  "distributional": (None, {"distributional": True}),
  "rainbow": ("rainbow", {}),
  "qrdqn": ("qrdqn", {}),  # QR-DQN with 50 quantiles (not a Rainbow component: compare it with plain and distributional)
}


# Every variant trains its whole budget (a preset's stop_at_return would end the runs at their first solve), and its
# final policy plays 20 greedy episodes from the periodic evaluations' seeds, the protocol of BENCHMARKS.md's tables.
FIXED_BUDGET = {"stop_at_return": None}
FINAL_EPISODES, FINAL_SEED = 20, 10_000


def run(env_id: str, variant: str, seed: int, out: str, threshold: float, extra: dict) -> dict:
  folder = Path(out) / variant
  done = folder / f"seed{seed}" / "row.json"
  preset, overrides = VARIANTS[variant]
  fields = {**FIXED_BUDGET, **overrides, **extra}  # --set may turn a stop back on
  if done.exists():
    from tinydqn.config import make_config
    from tinydqn.errors import UserError
    from tinydqn.rundir import check_same_config
    try: check_same_config(done.parent, make_config(env_id, preset, seed=seed, **fields))  # e.g. a preset changed
    except UserError as e: raise SystemExit(f"{e} (--out)") from None
    return json.loads(done.read_text())
  row = {"variant": variant, **cartpole_seeds.run_seed(env_id, preset, fields, seed, str(folder),
                                                       FINAL_EPISODES, FINAL_SEED, threshold)}
  done.write_text(json.dumps(row))
  return row


def quartiles(values: list[float]) -> str:
  """Median [25th, 75th percentile]; a run that never solved counts as infinitely late."""
  with np.errstate(invalid="ignore"):  # inf − inf while interpolating between two never-solved runs
    q = np.nan_to_num(np.percentile(np.array(values, dtype=float), [25, 50, 75]), nan=np.inf)
  fmt = lambda x: "never" if np.isinf(x) else f"{x:.0f}"
  return f"{fmt(q[1])} [{fmt(q[0])}, {fmt(q[2])}]"


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--env", default="CartPole-v1")
  ap.add_argument("--variants", default=",".join(VARIANTS))
  ap.add_argument("--seeds", default="0-9")
  ap.add_argument("--solved", type=float, default=475.0, help="greedy mean return that counts as solved")
  ap.add_argument("--jobs", type=int, default=2)
  ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                  help="config override for every variant (JSON value), e.g. adam_eps=1.5e-4")
  ap.add_argument("--out", default=None, help="[default: results/ablation/ENV beside this script, +FIELD=VALUE per --set]")
  args = ap.parse_args()
  extra = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
  out = args.out or str(Path(__file__).parent / "results" / "ablation" / "+".join([args.env, *args.set]))
  variants, seeds = args.variants.split(","), parse_seeds(args.seeds)
  unknown = set(variants) - set(VARIANTS)
  if unknown: ap.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
  jobs = [(args.env, v, s, out, args.solved, extra) for s in seeds for v in variants]  # seed-major: variants alternate
  with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
    rows = list(pool.map(run, *zip(*jobs)))
  by_variant = {v: [r for r in rows if r["variant"] == v] for v in variants}
  plain_cost = statistics.median(1 / r["sps"] for r in by_variant["plain"]) if "plain" in by_variant else None
  print(f"\n{args.env} {' '.join(args.set)}, seeds {args.seeds}, solved = greedy mean >= {args.solved:g}, {args.jobs} runs in parallel\n")
  print("| variant | seeds | final return: median [IQR] | ending solved | first solve step: median [IQR] "
        "| never solved | s per 1k env steps | cost vs plain |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for v, rs in by_variant.items():
    finals = [r["final_return"] for r in rs]
    solved = [r["solved_step"] if r["solved_step"] is not None else np.inf for r in rs]
    cost = statistics.median(1 / r["sps"] for r in rs)
    ratio = f"{cost / plain_cost:.2f}×" if plain_cost else "-"
    print(f"| {v} | {len(rs)} | {quartiles(finals)} | {sum(f >= args.solved for f in finals)} | {quartiles(solved)} | "
          f"{sum(np.isinf(solved))} | {cost * 1000:.2f} | {ratio} |")
  print("\nper seed (final return / first solve step):")
  for v, rs in by_variant.items():
    print(f"  {v:15s} " + "  ".join(f"s{r['seed']}: {r['final_return']:.0f}/{r['solved_step'] or '-'}" for r in rs))


if __name__ == "__main__":
  main()
