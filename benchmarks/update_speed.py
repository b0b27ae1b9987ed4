"""µs per gradient step and per action for tinydqn's agent, under tinygrad's process-wide levers.

Each lever runs in its own process (HCQ2 and BEAM are read when tinygrad is imported), alternating, and
the median over repeats is printed. BEAM's kernel search runs once per shape and is cached by tinygrad.
`--suite rainbow` times each Rainbow component on the CartPole preset instead (sampling, the jitted step and,
with prioritized replay, the priority update), relative to plain DQN.

    .venv/bin/python benchmarks/update_speed.py                 # table for the zoo and CleanRL shapes
    .venv/bin/python benchmarks/update_speed.py --levers none,HCQ2=1 --repeats 5
    .venv/bin/python benchmarks/update_speed.py --suite rainbow --levers none
    .venv/bin/python benchmarks/update_speed.py --suite rainbow --only plain,rainbow --levers HCQ2=1+BEAM=2 --side-by-side 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SUITES = {  # name: (preset, {shape or variant: config overrides})
  "levers": (None, {
    "zoo [256,256] B64": dict(net_arch=(256, 256), batch_size=64),
    "CleanRL [120,84] B128": dict(net_arch=(120, 84), batch_size=128),
    "[256,256] B64 double": dict(net_arch=(256, 256), batch_size=64, double_q=True),
    # bursts of gradient steps (the zoo runs 128 per burst) fused into one jitted call, 16 at a time
    "zoo [256,256] B64, 16 per call": dict(net_arch=(256, 256), batch_size=64, gradient_steps=128, fused_updates=16),
    "small [64,64] B64 double": dict(net_arch=(64, 64), batch_size=64, double_q=True),
    "small [64,64] B64 double, 16 per call": dict(net_arch=(64, 64), batch_size=64, double_q=True, gradient_steps=16,
                                                  fused_updates=16),
    "CartPole preset [64,64] B128 double, 16 per call": dict(net_arch=(64, 64), batch_size=128, double_q=True,
                                                             loss="mse", gradient_steps=128, fused_updates=16),
    "CartPole [256,256] B128 double, 16 per call": dict(net_arch=(256, 256), batch_size=128, double_q=True,
                                                               loss="mse", gradient_steps=128, fused_updates=16),
  }),
  "rainbow": ("cartpole", {
    "plain (CartPole preset)": {}, "n_step 3": dict(n_step=3), "prioritized": dict(prioritized=True),
    "dueling": dict(dueling=True), "noisy": dict(noisy=True), "distributional": dict(distributional=True),
    "rainbow (all)": dict(n_step=3, prioritized=True, dueling=True, noisy=True, distributional=True),
  }),
}


def measure(suite: str, name: str, updates: int = 300) -> dict:
  import numpy as np
  from tinygrad import Tensor

  from tinydqn.agent import DQNAgent
  from tinydqn.buffers import ReplayBuffer
  from tinydqn.config import Config, make_config
  Tensor.manual_seed(0)
  preset, variants = SUITES[suite]
  config = make_config("CartPole-v1", preset, **variants[name]) if preset else Config(**variants[name])
  agent = DQNAgent(config, (4,), np.dtype(np.float32), 2)
  rng = np.random.default_rng(0)
  memory = ReplayBuffer(10_000, (4,), np.float32, num_envs=100, n_step=config.n_step, gamma=config.gamma,
                        prioritized=config.prioritized, alpha=config.alpha)
  for _ in range(100):  # 100 envs × 100 steps
    memory.add(rng.normal(size=(100, 4)), rng.integers(2, size=100), rng.normal(size=100),
               rng.normal(size=(100, 4)), rng.random(100) < 0.05, np.zeros(100))
  update_s, act_s = [], []
  obs = rng.normal(size=(1, 4)).astype(np.float32)
  per_call = agent.fuse  # gradient steps per jitted call: a fused burst is timed as a whole and divided
  for _ in range(updates // per_call + 20):
    t = time.perf_counter()
    if config.prioritized:
      drawn = memory.sample_into(agent.batch, rng, 0.5)
      agent.update(rng)
      memory.update_priorities(drawn, agent.last_priorities)
    else: agent.updates(per_call, lambda batch: memory.sample_into(batch, rng), rng)
    update_s.append((time.perf_counter() - t) / per_call)
    t = time.perf_counter()
    agent.act(obs, 0.0, rng)
    act_s.append(time.perf_counter() - t)
  jit = agent._update_fused or agent._update
  jit = getattr(jit, "jit", jit)  # a DirectReplay (tinydqn.jit_replay) holds the TinyJit it replays
  return {"update_us": statistics.median(update_s[20:]) * 1e6, "act_us": statistics.median(act_s[20:]) * 1e6,
          "launches": len(jit.captured.linear.src), "steps_per_call": per_call}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--levers", default="none,BEAM=2,HCQ2=1,HCQ2=1+BEAM=2",
                  help="comma-separated; each is 'none' or VAR=VALUE joined by '+'")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--suite", choices=list(SUITES), default="levers")
  ap.add_argument("--only", default=None, help="comma-separated names of the suite's rows to time (matched by prefix)")
  ap.add_argument("--side-by-side", type=int, default=1, metavar="N",
                  help="time N processes at once (2: the cost when two runs share this 2-core machine)")
  ap.add_argument("--child", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.child:
    print(json.dumps(measure(args.suite, args.child)))
    return
  levers = args.levers.split(",")
  results: dict[tuple[str, str], list[dict]] = {}
  shapes = [s for s in SUITES[args.suite][1] if not args.only or any(s.startswith(o) for o in args.only.split(","))]
  for _ in range(args.repeats):
    for shape in shapes:
      for lever in levers:
        env = {**os.environ, **dict(kv.split("=") for kv in lever.split("+") if kv != "none")}
        children = [subprocess.Popen([sys.executable, __file__, "--suite", args.suite, "--child", shape], env=env,
                                     stdout=subprocess.PIPE, text=True) for _ in range(args.side_by_side)]
        for child in children:  # each side-by-side process is one sample
          out, _ = child.communicate()
          if child.returncode: raise SystemExit(f"{shape} with {lever} failed (exit {child.returncode})")
          results.setdefault((shape, lever), []).append(json.loads(out.strip().splitlines()[-1]))
        print(shape, lever, results[(shape, lever)][-args.side_by_side:], file=sys.stderr, flush=True)
  if args.side_by_side > 1: print(f"\n{args.side_by_side} processes at a time")
  print("\n| shape | lever | launches per jitted call (steps per call) | µs per update (sample + step) | × first row "
        "| µs per action |")
  print("|---|---|---:|---:|---:|---:|")
  first = {}
  for (shape, lever), rows in results.items():
    update_us = statistics.median(r["update_us"] for r in rows)
    first.setdefault(lever, update_us)
    print(f"| {shape} | {lever} | {rows[0]['launches']} ({rows[0]['steps_per_call']}) | {update_us:.0f} | {update_us / first[lever]:.2f} | "
          f"{statistics.median(r['act_us'] for r in rows):.1f} |")


if __name__ == "__main__":
  main()
