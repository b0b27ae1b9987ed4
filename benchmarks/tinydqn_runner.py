"""One tinydqn run with the same protocol and output as sb3_runner.py; prints one JSON line.

Run as a script (by vs_sb3.py and presets_table.py) it trains the JSON config it is given in a temporary directory.
Imported, `train_run` and `judge` are how the other benchmarks (cartpole_seeds.py, rainbow_ablation.py) train a run
and play its policies: the importer sets up tinygrad first (`tinydqn.fast.use_fast_kernels()`).
"""
import csv
import json
import resource
import sys
import tempfile
import time

PROCESS_START = time.perf_counter()  # set-up = imports, agent construction (kernel builds) and env creation


def train_run(config, run_dir, force: bool = False):
  """Trains `config` (a tinydqn Config) into `run_dir` without a progress line; returns the train result and the
  periodic evaluations from eval.csv (step, mean return, wall-clock and training wall-clock seconds)."""
  from tinydqn.train import train
  result = train(config, run_dir=run_dir, force=force, progress=False)
  with open(result.run_dir / "eval.csv") as f:
    evals = [{"step": int(r["step"]), "mean_return": float(r["mean_return"]), "time_s": float(r["time_s"]),
              "train_time_s": float(r["train_time_s"])} for r in csv.DictReader(f)]
  return result, evals


def judge(agent, env_id: str, episodes: int, seed: int):
  """Greedy episodes of `agent` on a fresh env, episode i from seed `seed` + i (tinydqn.evaluate's result)."""
  from tinydqn.envs import make_env
  from tinydqn.evaluate import evaluate
  return evaluate(agent, make_env(env_id), episodes, seed)


def main():
  from tinydqn.config import Config
  cfg = json.loads(sys.argv[1])
  final_episodes = cfg.pop("final_episodes")
  config = Config.from_dict(cfg)
  with tempfile.TemporaryDirectory() as tmp:
    result, evals = train_run(config, f"{tmp}/run")
    # outside the training loop: mostly before it (imports, agent, envs), plus the final checkpoint written after it
    setup_seconds = time.perf_counter() - PROCESS_START - result.seconds
  final = judge(result.agent, config.env_id, final_episodes, config.eval_seed)
  print(json.dumps({"library": "tinydqn", "seed": config.seed, "seconds": result.seconds,
                    "train_seconds": result.seconds - result.eval_seconds, "setup_seconds": setup_seconds, "evals": evals,
                    "final_return": final.mean_return,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
  from tinydqn.fast import use_fast_kernels
  use_fast_kernels()  # as `tinydqn train` does: HCQ2 for the CPU unless the environment says otherwise
  main()
