"""Where a training run's time goes: µs per env step for env step, act, store, sample, update, target sync,
logging and evaluation, measured by timing those calls inside an ordinary `train()` run.

    .venv/bin/python benchmarks/profile_loop.py                     # CleanRL-style CartPole config
    .venv/bin/python benchmarks/profile_loop.py --config zoo        # SB3 zoo CartPole config
    .venv/bin/python benchmarks/profile_loop.py --set num_envs=8
    .venv/bin/python benchmarks/profile_loop.py --plain              # no timers: env steps/s only
    .venv/bin/python benchmarks/profile_loop.py --no-sync --set lagged_acting=true   # what each call costs the loop

Timing wrappers cost ≈0.3 µs per call. On asynchronous devices the update is synchronized inside its timer
so that its cost is not billed to the next act.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict

from tinydqn.fast import use_fast_kernels

use_fast_kernels()  # as `tinydqn train` does: HCQ2 for the CPU unless the environment says otherwise

from tinygrad import Device  # noqa: E402 (tinygrad reads HCQ2 when first imported)

import tinydqn.train as train_module  # noqa: E402
from tinydqn.agent import DQNAgent  # noqa: E402
from tinydqn.buffers import ReplayBuffer  # noqa: E402
from tinydqn.config import Config  # noqa: E402
from tinydqn.envs import LeanSyncVectorEnv  # noqa: E402
from tinydqn.logger import CsvLog, Progress  # noqa: E402

CONFIGS = {
  "cleanrl": dict(env_id="CartPole-v1", total_timesteps=100_000, learning_rate=2.5e-4, batch_size=128,
                  buffer_size=10_000, learning_starts=10_000, target_update_interval=500, train_freq=10,
                  gradient_steps=1, exploration_fraction=0.5, exploration_final_eps=0.05, net_arch=(120, 84),
                  eval_freq=0, eval_episodes=10),
  "zoo": dict(env_id="CartPole-v1", total_timesteps=50_000, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
              learning_starts=1000, target_update_interval=10, train_freq=256, gradient_steps=128,
              exploration_fraction=0.16, exploration_final_eps=0.04, net_arch=(256, 256), eval_freq=0),
}
PHASES = [("env step", LeanSyncVectorEnv, "step"), ("act", DQNAgent, "act"), ("store", ReplayBuffer, "add"),
          ("round start (lagged_acting: wait, copy θ)", DQNAgent, "refresh_acting"),
          ("sample", ReplayBuffer, "sample_into"), ("update", DQNAgent, "update"), ("update", DQNAgent, "updates"),
          ("target sync", DQNAgent, "sync_target"), ("logging", CsvLog, "write"), ("logging", Progress, "update"),
          ("evaluation", train_module, "evaluate"), ("snapshot", train_module, "save_snapshot")]


def instrument(totals: dict[str, float], sync: bool = True) -> None:
  """Wraps each phase's call; a phase's time excludes the phases called inside it (a fused burst of updates
  draws its minibatches through `sample_into`, which is billed to "sample"). `sync`: wait for the device at the
  end of each update, so that its kernels are billed to it; without, an update is what it costs the loop (with
  lagged_acting, the submission; the wait shows up at the next round's start)."""
  inner: list[float] = []  # per active timed call: seconds spent in timed calls nested inside it
  for phase, owner, name in PHASES:
    original = getattr(owner, name)
    def timed(*args, _original=original, _phase=phase, **kwargs):
      inner.append(0.0)
      t = time.perf_counter()
      out = _original(*args, **kwargs)
      if _phase == "update" and sync: Device[args[0].device].synchronize()
      elapsed = time.perf_counter() - t
      nested = inner.pop()
      totals[_phase] += elapsed - nested
      if inner: inner[-1] += elapsed
      return out
    setattr(owner, name, timed)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", choices=list(CONFIGS), default="cleanrl")
  ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override (JSON value)")
  ap.add_argument("--plain", action="store_true", help="no timers (they wait for the device after each update)")
  ap.add_argument("--no-sync", action="store_true", help="timers that do not wait for the device after updates")
  args = ap.parse_args()
  overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
  config = Config(**{**CONFIGS[args.config], **overrides})
  totals: dict[str, float] = defaultdict(float)
  if not args.plain: instrument(totals, sync=not args.no_sync)
  with tempfile.TemporaryDirectory() as tmp:
    result = train_module.train(config, run_dir=f"{tmp}/run", progress=False)
  steps = config.total_timesteps
  other = result.seconds - sum(totals.values())
  print(f"\n{args.config} config {overrides or ''}: {steps} env steps in {result.seconds:.1f} s = "
        f"{steps / result.seconds:.0f} env steps/s\n")
  if args.plain: return
  print("| phase | µs per env step | share |\n|---|---:|---:|")
  for phase, seconds in [*sorted(totals.items(), key=lambda kv: -kv[1]), ("other (loop, ε, bookkeeping)", other)]:
    print(f"| {phase} | {seconds / steps * 1e6:.1f} | {seconds / result.seconds:.0%} |")


if __name__ == "__main__":
  main()
