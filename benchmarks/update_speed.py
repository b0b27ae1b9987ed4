"""µs per gradient step and per action for tinydqn's agent, under tinygrad's process-wide levers.

Each lever runs in its own process (HCQ2 and BEAM are read when tinygrad is imported), alternating, and
the median over repeats is printed. BEAM's kernel search runs once per shape and is cached by tinygrad.

    .venv/bin/python benchmarks/update_speed.py                 # table for the zoo and CleanRL shapes
    .venv/bin/python benchmarks/update_speed.py --levers none,HCQ2=1 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = {  # name: (net_arch, batch_size, double_q)
  "zoo [256,256] B64": ((256, 256), 64, False),
  "CleanRL [120,84] B128": ((120, 84), 128, False),
  "[256,256] B64 double": ((256, 256), 64, True),
}


def measure(net_arch: tuple[int, ...], batch_size: int, double_q: bool, updates: int = 300) -> dict:
  import numpy as np
  from tinygrad import Tensor

  from tinydqn.agent import DQNAgent
  from tinydqn.buffers import ReplayBuffer
  from tinydqn.config import Config
  Tensor.manual_seed(0)
  config = Config(net_arch=net_arch, batch_size=batch_size, double_q=double_q)
  agent = DQNAgent(config, (4,), np.dtype(np.float32), 2)
  rng = np.random.default_rng(0)
  memory = ReplayBuffer(10_000, (4,), np.float32, num_envs=10_000)  # filled in one add: one "env" per row
  memory.add(rng.normal(size=(10_000, 4)), rng.integers(2, size=10_000), rng.normal(size=10_000),
             rng.normal(size=(10_000, 4)), rng.random(10_000) < 0.05, np.zeros(10_000))
  update_s, act_s = [], []
  obs = rng.normal(size=(1, 4)).astype(np.float32)
  for _ in range(updates):
    t = time.perf_counter()
    memory.sample_into(agent.batch, rng)
    agent.update()
    update_s.append(time.perf_counter() - t)
    t = time.perf_counter()
    agent.act(obs, 0.0, rng)
    act_s.append(time.perf_counter() - t)
  return {"update_us": statistics.median(update_s[20:]) * 1e6, "act_us": statistics.median(act_s[20:]) * 1e6,
          "kernels": len(agent._update.captured.linear.src)}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--levers", default="none,BEAM=2,HCQ2=1,HCQ2=1+BEAM=2",
                  help="comma-separated; each is 'none' or VAR=VALUE joined by '+'")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--child", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.child:
    print(json.dumps(measure(*SHAPES[args.child][:2], SHAPES[args.child][2])))
    return
  levers = args.levers.split(",")
  results: dict[tuple[str, str], list[dict]] = {}
  for _ in range(args.repeats):
    for shape in SHAPES:
      for lever in levers:
        env = {**os.environ, **dict(kv.split("=") for kv in lever.split("+") if kv != "none")}
        out = subprocess.run([sys.executable, __file__, "--child", shape], env=env, capture_output=True, text=True,
                             check=True).stdout
        results.setdefault((shape, lever), []).append(json.loads(out.strip().splitlines()[-1]))
        print(shape, lever, results[(shape, lever)][-1], file=sys.stderr, flush=True)
  print("\n| shape | lever | kernels | µs per update (sample + step) | µs per action |\n|---|---|---:|---:|---:|")
  for (shape, lever), rows in results.items():
    print(f"| {shape} | {lever} | {rows[0]['kernels']} | {statistics.median(r['update_us'] for r in rows):.0f} | "
          f"{statistics.median(r['act_us'] for r in rows):.1f} |")


if __name__ == "__main__":
  main()
