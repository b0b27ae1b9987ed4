"""One tinydqn run with the same protocol and output as sb3_runner.py; prints one JSON line."""
import csv
import json
import resource
import sys
import tempfile
import time

PROCESS_START = time.perf_counter()  # set-up = imports, agent construction (kernel builds) and env creation

from tinydqn.fast import use_fast_kernels  # noqa: E402 (after the clock starts)

use_fast_kernels()  # as `tinydqn train` does: HCQ2 for the CPU unless the environment says otherwise
from tinydqn.config import Config  # noqa: E402 (tinygrad must start after the line above)
from tinydqn.envs import make_env  # noqa: E402
from tinydqn.evaluate import evaluate  # noqa: E402
from tinydqn.train import train  # noqa: E402


def main():
  cfg = json.loads(sys.argv[1])
  final_episodes = cfg.pop("final_episodes")
  config = Config.from_dict(cfg)
  with tempfile.TemporaryDirectory() as tmp:
    result = train(config, run_dir=f"{tmp}/run", progress=False)
    # outside the training loop: mostly before it (imports, agent, envs), plus the final checkpoint written after it
    setup_seconds = time.perf_counter() - PROCESS_START - result.seconds
    with open(result.run_dir / "eval.csv") as f:
      rows = [{"step": int(r["step"]), "mean_return": float(r["mean_return"]), "time_s": float(r["time_s"]),
               "train_time_s": float(r["train_time_s"])} for r in csv.DictReader(f)]
  final = evaluate(result.agent, make_env(config.env_id), final_episodes, config.eval_seed)
  print(json.dumps({"library": "tinydqn", "seed": config.seed, "seconds": result.seconds,
                    "train_seconds": result.seconds - result.eval_seconds, "setup_seconds": setup_seconds, "evals": rows,
                    "final_return": final.mean_return,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
  main()
