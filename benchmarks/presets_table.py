"""The classic-control preset table: tinydqn's presets against SB3 with the zoo's settings, on fresh seeds.

Per task, each seed is one run per library (separate processes, via vs_sb3.py's runners), evaluated the same way:
greedy every eval_freq env steps, and the final policy over 20 episodes. Results are kept as one JSON file per
run in --out, so an interrupted table resumes where it stopped and a finished one prints again at once.
Reported per task and library: the IQM of final returns with a 95% bootstrap interval (tinydqn.plot's
statistics), the fraction of seeds ending solved, the median env step and training wall-clock of the first
solving evaluation (over the seeds that solved), and the median set-up time before the first env step (imports,
network construction and, for tinydqn, building its kernels: a machine's first run builds them, later runs
read them from tinygrad's disk cache).

After the table, --figures (default benchmarks/figures) gets two PNGs per task, drawn by tinydqn.plot: greedy
evaluation return against env steps (presets_TASK.png) and against training wall-clock (presets_TASK_time.png), one
curve per library, the IQM over seeds with a 95% bootstrap band. They are drawn from the JSON files, so a finished
table draws them again without running anything.

The default seeds, 100-119, were chosen before any result on them was seen and were never used for tuning
(the presets were tuned on seeds 0-9); SB3 runs the first --sb3-seeds of them.

    bash benchmarks/setup_sb3.sh                                       # once; LunarLander needs Box2D in both
    .venv/bin/pip install -e ".[box2d]"; benchmarks/.sb3-venv/bin/pip install "gymnasium[box2d]"
    .venv/bin/python benchmarks/presets_table.py --jobs 2              # all four tasks, 20 seeds, SB3 on 5
    .venv/bin/python benchmarks/presets_table.py --tasks CartPole-v1 --seeds 100-104 --sb3-seeds 2
    .venv/bin/python benchmarks/presets_table.py --tasks CartPole-v1 --figures ""  # the table only, no figures
    .venv/bin/python benchmarks/presets_table.py --tasks Acrobot-v1 --stored       # what has run so far, nothing new
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_sb3 import SB3_PYTHON, ZOO, run, tinydqn_preset  # noqa: E402

from tinydqn.plot import bootstrap_ci, iqm, learned_settings, plot_curves  # noqa: E402
from tinydqn.sweep import parse_seeds  # noqa: E402

# task: (tinydqn preset, solved at a greedy mean of at least, the zoo's published DQN score at its budget)
TASKS = {
  "CartPole-v1": ("cartpole", 475.0, 500.0),
  "Acrobot-v1": ("acrobot", -100.0, -76.6),
  "MountainCar-v0": ("mountaincar", -110.0, -100.9),
  "LunarLander-v3": ("lunarlander", 200.0, 154.4),
}


# rl-baselines3-zoo hyperparams/dqn.yml per task ("Tuned"; LunarLander's are its v2 settings): what SB3 runs. Its
# gradient_steps -1 means one gradient step per env step collected, i.e. train_freq with one env.
SB3_DEFAULTS = dict(exploration_initial_eps=1.0, tau=1.0, max_grad_norm=10.0)
ZOO_SETTINGS = {
  "CartPole-v1": ZOO,
  "Acrobot-v1": dict(env_id="Acrobot-v1", total_timesteps=100_000, learning_rate=6.3e-4, batch_size=128,
                     buffer_size=50_000, learning_starts=0, gamma=0.99, target_update_interval=250, train_freq=4,
                     gradient_steps=4, exploration_fraction=0.12, exploration_final_eps=0.1, net_arch=[256, 256],
                     **SB3_DEFAULTS),
  "MountainCar-v0": dict(env_id="MountainCar-v0", total_timesteps=120_000, learning_rate=4e-3, batch_size=128,
                         buffer_size=10_000, learning_starts=1_000, gamma=0.98, target_update_interval=600,
                         train_freq=16, gradient_steps=8, exploration_fraction=0.2, exploration_final_eps=0.07,
                         net_arch=[256, 256], **SB3_DEFAULTS),
  "LunarLander-v3": dict(env_id="LunarLander-v3", total_timesteps=100_000, learning_rate=6.3e-4, batch_size=128,
                         buffer_size=50_000, learning_starts=0, gamma=0.99, target_update_interval=250, train_freq=4,
                         gradient_steps=4, exploration_fraction=0.12, exploration_final_eps=0.1,
                         net_arch=[256, 256], **SB3_DEFAULTS),
}


def configs(task: str, total_timesteps: int | None = None) -> dict[str, dict]:
  """Both libraries' settings: tinydqn's preset, SB3 with the zoo's."""
  preset, zoo = TASKS[task][0], ZOO_SETTINGS[task]
  budget = {"total_timesteps": total_timesteps or zoo["total_timesteps"]}
  common = {**budget, "eval_freq": make_eval_freq(budget)}
  return {"tinydqn": {**tinydqn_preset(preset), **common}, "sb3": {**zoo, **common}}


def make_eval_freq(config: dict) -> int:
  """One greedy evaluation every 1/20 of the budget (2,500 steps on CartPole, as the README's figures)."""
  return max(config["total_timesteps"] // 20, 1)


def result_path(out: Path, task: str, library: str, seed: int) -> Path:
  return out / task / f"{library}_seed{seed}.json"


def stored_result(task: str, library: str, config: dict, seed: int, out: Path) -> dict | None:
  """The stored result of this run, or None if it has not run. A result records the settings it ran with (those
  written before it did are taken as current); one from other settings (a preset since changed, --total-timesteps)
  stops the table, so that it is neither mixed in nor overwritten."""
  path = result_path(out, task, library, seed)
  if not path.exists(): return None
  kept = json.loads(path.read_text())
  if learned_settings(kept.get("config", config)) != learned_settings(config):  # e.g. steps per call: same numbers
    sys.exit(f"{path} ran with other settings than these (a changed preset, --total-timesteps): move it away or pass another --out")
  return kept


def one_run(task: str, library: str, config: dict, seed: int, out: Path, jobs: int) -> dict:
  # checked again here: another invocation filling the same table may have finished this run meanwhile
  if (kept := stored_result(task, library, config, seed, out)) is not None: return kept
  path = result_path(out, task, library, seed)
  # runs side by side get a core each: torch would otherwise start a thread per core in every SB3 process (two SB3
  # runs on two cores then took over 5 minutes each instead of about 30 s)
  result = run(library, config, seed, {"OMP_NUM_THREADS": "1"} if library == "sb3" and jobs > 1 else {})
  result["config"] = config
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(result))
  print(f"{task} {library} seed {seed}: final {result['final_return']:.1f}, train {result['train_seconds']:.0f} s",
        file=sys.stderr, flush=True)
  return result


def summary(rows: list[dict], solved: float) -> str:
  finals = np.array([r["final_return"] for r in rows], dtype=np.float64)
  low, high = bootstrap_ci(finals, "iqm")
  firsts = [next((e for e in r["evals"] if e["mean_return"] >= solved), None) for r in rows]
  firsts = [f for f in firsts if f is not None]
  step = f"{statistics.median(f['step'] for f in firsts):,.0f}" if firsts else "never"
  seconds = f"{statistics.median(f['train_time_s'] for f in firsts):.1f}" if firsts else "-"
  train = statistics.median(r["train_seconds"] for r in rows)
  # set-up (imports, network construction and, for tinydqn, building its kernels) is before the first env step;
  # results written before it was measured have none
  setups = [r["setup_seconds"] for r in rows if "setup_seconds" in r]
  setup = f"{statistics.median(setups):.1f}" if setups else "-"
  return (f"{len(rows)} | {float(iqm(finals)):.1f} [{low:.1f}, {high:.1f}] | "
          f"{sum(finals >= solved)}/{len(rows)} | {step} | {seconds} | {setup} | {train:.1f}")


# --figures: (file suffix, evals key, x-axis label)
FIGURE_X = [("", "step", "environment steps"),
            ("_time", "train_time_s", "training wall-clock seconds (evaluations excluded)")]


def draw(task: str, by_library: dict[str, list[dict]], figures: Path, title: str) -> list[Path]:
  """Greedy evaluation return per library, the IQM over seeds with a 95% bootstrap band (tinydqn.plot), against env
  steps and against training wall-clock."""
  names = {"tinydqn": f"tinydqn, {TASKS[task][0]} preset", "sb3": "SB3, zoo settings"}
  paths = []
  for suffix, key, xlabel in FIGURE_X:
    groups = {names[lib]: [(np.array([e[key] for e in r["evals"]]), np.array([e["mean_return"] for e in r["evals"]]))
                           for r in rows] for lib, rows in by_library.items() if rows}
    paths.append(plot_curves(groups, figures / f"presets_{task}{suffix}.png", "iqm", xlabel, title=title))
  return paths


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
  ap.add_argument("--seeds", default="100-119", help="tinydqn's seeds (default: 20 never used for tuning)")
  ap.add_argument("--sb3-seeds", type=int, default=5, help="SB3 runs the first N of --seeds (0: tinydqn only)")
  ap.add_argument("--libraries", default="tinydqn,sb3", help="comma-separated, of tinydqn, sb3")
  ap.add_argument("--jobs", type=int, default=1, help="runs at a time (2 shares this machine's two cores)")
  ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "presets"))
  ap.add_argument("--total-timesteps", type=int, help="another budget for every task (a smoke test, not the table)")
  ap.add_argument("--stored", action="store_true", help="run nothing: the table (and figures) of the stored results")
  ap.add_argument("--figures", default=str(Path(__file__).resolve().parent / "figures"), metavar="DIR",
                  help="where the per-task figures go (presets_TASK.png, presets_TASK_time.png); '' for none")
  args = ap.parse_args()
  seeds, out = parse_seeds(args.seeds), Path(args.out)
  libraries = args.libraries.split(",")
  jobs = [(task, library, config, seed) for task in args.tasks.split(",") for seed in seeds
          for library, config in configs(task, args.total_timesteps).items()
          if library in libraries and (library == "tinydqn" or seed in seeds[:args.sb3_seeds])]
  runs = [(job, stored_result(*job, out)) for job in jobs]  # each with its stored result, or None
  if args.stored:  # the table of what has run, e.g. while other invocations still fill the rest in
    kept = [(job, result) for job, result in runs if result is not None]
    if len(kept) < len(runs): print(f"{len(runs) - len(kept)} of the runs asked for have no stored result: left out", file=sys.stderr)
    runs = kept
  # only runs still to do need SB3's venv: a finished table prints (and draws) without it
  sb3_to_run = any(job[1] == "sb3" and result is None for job, result in runs)
  if sb3_to_run and not SB3_PYTHON.exists(): sys.exit("run `bash benchmarks/setup_sb3.sh` first, or pass --sb3-seeds 0")
  with ThreadPoolExecutor(args.jobs) as pool:  # threads only wait: every run is its own process
    results = list(pool.map(lambda run: (run[0], run[1] or one_run(*run[0], out, args.jobs)), runs))
  print(f"\nSeeds {args.seeds} (SB3: the first {args.sb3_seeds}); final = the final greedy policy over 20 episodes\n")
  print("| task | library | seeds | final IQM [95% CI] | ends solved | first solve: median env step | : train s "
        "| set-up s (median) | train s (median) | zoo's published score |")
  print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  by_task = {task: {library: [r for (t, lib, _, _), r in results if t == task and lib == library]
                     for library in ("tinydqn", "sb3")} for task in args.tasks.split(",")}
  for task, by_library in by_task.items():
    for library, rows in by_library.items():
      if rows: print(f"| {task} | {library} | {summary(rows, TASKS[task][1])} | {TASKS[task][2]} |")
  if args.figures:
    print()
    for task, by_library in by_task.items():
      sb3 = f" (SB3: the first {len(by_library['sb3'])})" if by_library["sb3"] else ""
      title = f"{task}: greedy evaluation, seeds {args.seeds}{sb3}"
      for path in draw(task, by_library, Path(args.figures), title): print(f"wrote {path}")


if __name__ == "__main__":
  main()
