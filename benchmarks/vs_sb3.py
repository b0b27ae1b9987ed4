"""tinydqn against Stable-Baselines3 DQN, side by side: same machine, same seeds, runs alternating.

Each run is its own process (so peak RSS is per library). Wall-clock is training time without the
periodic greedy evaluations (both libraries evaluate the same way, every eval_freq steps, 10 episodes
with seeds eval_seed + i; that time is measured and taken out). Prints markdown tables and writes a
PNG of greedy return against training wall-clock.

    bash benchmarks/setup_sb3.sh                      # once: SB3 + CPU torch in benchmarks/.sb3-venv
    .venv/bin/python benchmarks/vs_sb3.py zoo         # SB3's own zoo CartPole config in both libraries
    .venv/bin/python benchmarks/vs_sb3.py solve       # each library's best CartPole preset: time to solve
    .venv/bin/python benchmarks/vs_sb3.py cleanrl     # CleanRL's dqn.py CartPole config: env steps/s
    .venv/bin/python benchmarks/vs_sb3.py handover --seeds 500-519 --sb3-seeds 500-504
        # `tinydqn train CartPole-v1 --seed S` as a user runs it, the whole process timed, against SB3's zoo run;
        # each policy handed over judged on 100 episodes no evaluation during training played
    .venv/bin/python benchmarks/vs_sb3.py zoo --tinydqn-env HCQ2=1,BEAM=2   # tinygrad's levers, as `train --fast`
    .venv/bin/python benchmarks/vs_sb3.py cleanrl --also lagged_acting=true  # and a tinydqn variant beside the default

With BEAM in --tinydqn-env, one short untimed tinydqn run first fills tinygrad's kernel-search cache for the
config's shapes (a one-off cost per machine, printed), so no timed run pays for the search.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SB3_PYTHON = HERE / ".sb3-venv" / "bin" / "python"
SOLVED = 475.0

# rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1 (the configuration SB3 users run).
ZOO = dict(env_id="CartPole-v1", total_timesteps=50_000, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
           learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
           exploration_fraction=0.16, exploration_initial_eps=1.0, exploration_final_eps=0.04, net_arch=[256, 256],
           tau=1.0, max_grad_norm=10.0)
# CleanRL dqn.py defaults (CartPole-v1): 500k steps, train every 10, batch 128, [120, 84], target every 500.
CLEANRL = dict(env_id="CartPole-v1", total_timesteps=500_000, learning_rate=2.5e-4, batch_size=128,
               buffer_size=10_000, learning_starts=10_000, gamma=0.99, target_update_interval=500, train_freq=10,
               gradient_steps=1, exploration_fraction=0.5, exploration_initial_eps=1.0, exploration_final_eps=0.05,
               net_arch=[120, 84], tau=1.0, max_grad_norm=10.0)
EVAL = dict(eval_freq=2500, eval_episodes=10, eval_seed=10_000, final_episodes=20)


def run(library: str, config: dict, seed: int, env: dict[str, str]) -> dict:
  cfg = {**EVAL, **config, "seed": seed}  # a config may bring its own evaluation settings
  if library.startswith("tinydqn"):
    cmd = [sys.executable, str(HERE / "tinydqn_runner.py"), json.dumps(cfg)]
  else:
    cmd = [str(SB3_PYTHON), str(HERE / "sb3_runner.py"), json.dumps(cfg)]
  out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout
  return json.loads(out.strip().splitlines()[-1])


def warm_kernel_cache(config: dict, env: dict[str, str]) -> None:
  """A few bursts of the config's gradient steps, so that tinygrad's kernel search runs (and is cached) here."""
  short = {**config, "total_timesteps": config["learning_starts"] + 3 * config["train_freq"] + 1,
           "exploration_fraction": 0.0}
  start = time.perf_counter()
  r = run("tinydqn", short, 0, env)
  print(f"kernel cache warm-up ({' '.join(f'{k}={v}' for k, v in env.items())}): {time.perf_counter() - start:.0f} s "
        f"(train {r['train_seconds']:.0f} s)", file=sys.stderr, flush=True)


def tinydqn_preset(name: str, **overrides) -> dict:
  from tinydqn.config import make_config
  d = make_config(preset=name, **overrides).to_dict()
  for k in ("eval_freq", "eval_episodes", "eval_seed"): d.pop(k)
  return d


def med(values: list[float]) -> str:
  return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def first_solve(r: dict) -> dict | None:
  return next((e for e in r["evals"] if e["mean_return"] >= SOLVED), None)


def table(results: dict[str, list[dict]], total_steps: dict[str, int]) -> str:
  lines = ["| library | train wall-clock s | env steps/s | final greedy return (20 ep) | seeds ≥ 475 | "
           "first eval ≥ 475: step | : train s | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
  for lib, rows in results.items():
    solves = [s for s in map(first_solve, rows) if s]
    lines.append(
      f"| {lib} | {med([r['train_seconds'] for r in rows])} | "
      f"{med([total_steps[lib] / r['train_seconds'] for r in rows])} | {med([r['final_return'] for r in rows])} | "
      f"{sum(r['final_return'] >= SOLVED for r in rows)}/{len(rows)} | "
      f"{med([s['step'] for s in solves]) if solves else 'never'} | "
      f"{med([s['train_time_s'] for s in solves]) if solves else '-'} | {med([r['peak_rss_mb'] for r in rows])} |")
  *ours, peer = list(results)  # every tinydqn variant against the peer (listed last)
  lines.append("")
  for lib in ours:
    a, b = (statistics.median(r["train_seconds"] for r in results[name]) for name in (lib, peer))
    lines.append(f"ratio of median train wall-clock {lib} / {peer}: **{a / b:.2f}**")
    sa, sb = ([s["train_time_s"] for s in map(first_solve, results[name]) if s] for name in (lib, peer))
    if sa and sb:
      lines.append(f"ratio of median time to first solve {lib} / {peer}: "
                   f"**{statistics.median(sa) / statistics.median(sb):.2f}**")
  return "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4))
  ours = iter(("tab:blue", "tab:green", "tab:purple"))
  for lib, rows in results.items():
    color = "tab:orange" if lib == "sb3" else next(ours)
    for i, r in enumerate(rows):
      ax.plot([e["train_time_s"] for e in r["evals"]], [e["mean_return"] for e in r["evals"]], color=color,
              alpha=0.5, label=lib if i == 0 else None)
  ax.axhline(SOLVED, color="grey", ls="--", lw=0.8)
  ax.set(xlabel="training wall-clock (s, evaluation excluded)", ylabel="greedy return (10 episodes)", title=title)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


JUDGE_EPISODES, JUDGE_SEED = 100, 1_000_000  # far from the evaluation seeds a run trains with (10,000 + i)


def tinydqn_cli_run(seed: int, extra: list[str]) -> dict:
  """`tinydqn train CartPole-v1 --seed S` in a process of its own, timed whole (imports, set-up, training, its
  evaluations, checkpoints); then its final and best checkpoints judged by `tinydqn eval` (not timed)."""
  import tempfile
  tinydqn = [sys.executable, "-m", "tinydqn"]
  with tempfile.TemporaryDirectory() as tmp:
    run_dir = f"{tmp}/run"
    start = time.perf_counter()
    subprocess.run([*tinydqn, "train", "CartPole-v1", "--seed", str(seed), "--run-dir", run_dir, "--quiet", *extra],
                   check=True, capture_output=True)
    seconds = time.perf_counter() - start
    judged = {}
    for name, flags in (("final", []), ("best", ["--best"])):
      out = subprocess.run([*tinydqn, "eval", run_dir, *flags, "--episodes", str(JUDGE_EPISODES), "--seed",
                            str(JUDGE_SEED), "--json"], check=True, capture_output=True, text=True).stdout
      judged[name] = json.loads(out)["mean_return"]
    summary = json.loads(Path(run_dir, "summary.json").read_text())
  return {"seed": seed, "process_seconds": seconds, "steps": summary["total_timesteps"],
          "handed_over": judged["final"], "best": judged["best"]}


def handover(args) -> None:
  """The main job as a user runs it, against SB3's zoo CartPole run (no evaluation in SB3's: a lower bound on its
  time), one process at a time, alternating while both have seeds left."""
  from tinydqn.plot import bootstrap_ci, iqm
  from tinydqn.sweep import parse_seeds
  import numpy as np
  seeds, sb3_seeds = parse_seeds(args.seeds or "500-519"), parse_seeds(args.sb3_seeds or "500-504")
  extra = [a for kv in args.also for a in (f"--{kv.split('=')[0].replace('_', '-')}", kv.split("=", 1)[1])]
  ours, peer = [], []
  for i in range(max(len(seeds), len(sb3_seeds))):
    if i < len(seeds):
      ours.append(tinydqn_cli_run(seeds[i], extra))
      r = ours[-1]
      print(f"tinydqn seed {r['seed']}: {r['process_seconds']:.1f} s, {r['steps']} steps, handed over "
            f"{r['handed_over']:.1f}, best {r['best']:.1f}", file=sys.stderr, flush=True)
    if i < len(sb3_seeds):
      r = run("sb3", {**ZOO, "eval_freq": 0}, sb3_seeds[i], {})
      peer.append({**r, "process_seconds": r["setup_seconds"] + r["seconds"]})
      print(f"sb3 seed {r['seed']}: {peer[-1]['process_seconds']:.1f} s, final {r['final_return']:.1f}", file=sys.stderr,
            flush=True)
  print(f"\n### `tinydqn train CartPole-v1 --seed S{' ' + ' '.join(extra) if extra else ''}` against SB3's zoo run\n")
  print(f"| seed | process s | env steps | handed over ({JUDGE_EPISODES} unseen episodes) | best checkpoint (same) |")
  print("|---:|---:|---:|---:|---:|")
  for r in ours:
    print(f"| {r['seed']} | {r['process_seconds']:.1f} | {r['steps']} | {r['handed_over']:.1f} | {r['best']:.1f} |")
  for name in ("handed_over", "best"):
    values = np.array([r[name] for r in ours], dtype=np.float64)
    low, high = bootstrap_ci(values, "iqm")
    print(f"\n{name.replace('_', ' ')}: {int((values >= SOLVED).sum())} of {len(ours)} >= {SOLVED:g}; "
          f"IQM {float(iqm(values)):.1f} [{low:.1f}, {high:.1f}]", end="")
  a, b = statistics.median(r["process_seconds"] for r in ours), statistics.median(r["process_seconds"] for r in peer)
  peer_finals = ", ".join(f"{r['final_return']:.1f}" for r in peer)
  print(f"\n\nmedian process wall-clock: tinydqn {a:.1f} s ({len(ours)} seeds), SB3 zoo {b:.1f} s ({len(peer)} seeds, "
        f"final returns over 20 episodes: {peer_finals}); ratio **{a / b:.3f}**")


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("comparison", choices=["zoo", "solve", "cleanrl", "handover"])
  ap.add_argument("--seeds", default=None, help="number of seeds (default: 5 for zoo, 10 for solve); handover: a "
                                                "seed list, e.g. 500-519")
  ap.add_argument("--sb3-seeds", default=None, help="handover: SB3's seed list [default: 500-504]")
  ap.add_argument("--out", default=str(HERE / "results"))
  ap.add_argument("--tinydqn-env", default="", metavar="VAR=VALUE,...",
                  help="environment for the tinydqn runs, e.g. HCQ2=1,BEAM=2 (tinygrad's opt-in levers)")
  ap.add_argument("--also", action="append", default=[], metavar="FIELD=VALUE,...",
                  help="one more tinydqn run per seed with these config fields changed, e.g. lagged_acting=true")
  args = ap.parse_args()
  if not SB3_PYTHON.exists(): sys.exit("run `bash benchmarks/setup_sb3.sh` first (SB3 lives in its own venv)")
  if args.comparison == "handover": return handover(args)
  if args.comparison == "zoo":  # the same hyperparameters in both libraries
    configs = {"tinydqn": ZOO, "sb3": ZOO}
  elif args.comparison == "solve":  # each library's best preset
    configs = {"tinydqn": tinydqn_preset("cartpole"), "sb3": ZOO}
  else:
    configs = {"tinydqn": CLEANRL, "sb3": CLEANRL}
  tiny_env = dict(kv.split("=", 1) for kv in args.tinydqn_env.split(",") if kv)
  if tiny_env: configs = {f"tinydqn ({' '.join(f'{k}={v}' for k, v in tiny_env.items())})": configs["tinydqn"],
                          "sb3": configs["sb3"]}
  for fields in args.also:  # inserted after the default tinydqn run, so each seed runs both back to back
    changes = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in fields.split(","))}
    lib = next(iter(configs))
    configs = {lib: configs[lib], f"tinydqn ({fields})": {**configs[lib], **changes},
               **{k: v for k, v in configs.items() if k != lib}}
  if "BEAM" in tiny_env: warm_kernel_cache(configs[next(iter(configs))], tiny_env)
  seeds = range(int(args.seeds) if args.seeds else {"zoo": 5, "solve": 10, "cleanrl": 3}[args.comparison])
  results: dict[str, list[dict]] = {lib: [] for lib in configs}
  for seed in seeds:  # alternate so drifting machine load hits both libraries alike
    for lib, config in configs.items():
      r = run(lib, config, seed, tiny_env if lib.startswith("tinydqn") else {})
      results[lib].append(r)
      print(f"{lib} seed {seed}: train {r['train_seconds']:.1f} s, final {r['final_return']:.1f}, "
            f"RSS {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  tag = args.comparison + ("_" + "_".join(f"{k}{v}" for k, v in tiny_env.items()) if tiny_env else "") + \
      "".join("_" + fields.replace("=", "").replace(",", "_") for fields in args.also)
  (out / f"vs_sb3_{tag}.json").write_text(json.dumps(results, indent=1))
  print(f"\n### {args.comparison}: {', '.join(f'{k}: {v}' for k, v in configs.items())}\n")
  print(table(results, {lib: c["total_timesteps"] for lib, c in configs.items()}))
  plot(results, out / f"vs_sb3_{tag}.png", f"CartPole-v1, {args.comparison}")
  print(f"\nplot: {out / f'vs_sb3_{tag}.png'}")


if __name__ == "__main__":
  main()
