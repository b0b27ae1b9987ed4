"""Where a short run's wall-clock goes before its first env step: `tinydqn train` end to end, with tinydqn's
program cache cold (a fresh tinygrad disk cache: the machine's first run of this network shape), warm (the same
run again) and off (TINYDQN_PROGRAM_CACHE=0: every process builds its kernels, as before the cache).

Per case: the process's wall-clock, the training loop's (summary.json `seconds`) and the rest (imports, agent
construction and kernel builds, env creation, the final evaluation and checkpoint). Prints a markdown table.

    python benchmarks/startup.py                                  # the default CartPole run, seed 0
    python benchmarks/startup.py --repeats 3 -- CartPole-v1 --seed 1 --total-timesteps 5000
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(train_args: list[str], env: dict[str, str], run_dir: Path) -> tuple[float, float, float]:
  """(process wall s, loop s, final greedy return) of one `tinydqn train` in a fresh process."""
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "tinydqn", "train", *train_args, "--run-dir", str(run_dir), "--force", "--quiet"],
                 env=env, check=True, capture_output=True)
  wall = time.perf_counter() - start
  summary = json.loads((run_dir / "summary.json").read_text())
  return wall, summary["seconds"], summary["final_eval"]["mean_return"]


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--repeats", type=int, default=1, help="runs per case (medians reported)")
  ap.add_argument("train_args", nargs="*", default=["CartPole-v1", "--seed", "0"], help="after --: `tinydqn train` arguments")
  args = ap.parse_args()
  base = {**os.environ, "DEV": os.environ.get("DEV", "CPU"), "TINYDQN_TENSORBOARD": "0"}
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    cold_cache = Path(tmp) / "cache.db"
    cases = [("cold (first run on this machine)", {"CACHEDB": str(cold_cache)}, True),
             ("warm (the same run again)", {"CACHEDB": str(cold_cache)}, False),
             ("off (TINYDQN_PROGRAM_CACHE=0)", {"TINYDQN_PROGRAM_CACHE": "0"}, False)]
    for name, extra, fresh in cases:
      results = []
      for i in range(args.repeats):
        if fresh:  # every cold repeat starts from an empty disk cache
          for f in Path(tmp).glob("cache.db*"): f.unlink()
        results.append(one_run(args.train_args, {**base, **extra}, Path(tmp) / "run"))
        print(f"{name}, repeat {i + 1}: wall {results[-1][0]:.1f} s, loop {results[-1][1]:.1f} s", file=sys.stderr, flush=True)
      walls, loops = [r[0] for r in results], [r[1] for r in results]
      rows.append((name, statistics.median(walls), statistics.median(loops), [r[2] for r in results]))
  print(f"\n`tinydqn train {' '.join(args.train_args)}`, {args.repeats} run(s) per case (medians)\n")
  print("| program cache | process wall s | training loop s | rest (set-up, final eval) s | final greedy return |")
  print("|---|---:|---:|---:|---|")
  for name, wall, loop, finals in rows:
    print(f"| {name} | {wall:.1f} | {loop:.1f} | {wall - loop:.1f} | {', '.join(f'{f:.1f}' for f in finals)} |")


if __name__ == "__main__":
  main()
