"""Where the CPU gradient step's time goes, kernel by kernel, against OpenBLAS on the same matmuls.

For each shape, one child process per kernel set (tinygrad's stock kernels, then `tinydqn.wide_kernels`) runs
the jitted gradient step (Adam, Huber, gradient clipping) under tinygrad's DEBUG=2, which times every kernel
launch; the parent prints each kernel's median µs and GFLOP/s. In the same run, numpy (OpenBLAS, one thread)
times the step's matmuls: per layer the forward x·Wᵀ of the online and target nets (and the online net at s'
with Double DQN), and the backward dL/dW and dL/dx (none for the input layer).

DEBUG=2 adds a few µs to every launch, which makes a step of many small kernels look slower than it runs. So the
same run also times the whole step as training runs it: wide kernels under HCQ2, the jitted call replayed directly
and waited for, at 1, 4 (how bursts of gradient steps run by default) and 16 steps per call, minibatch sampling
excluded.

    DEV=CPU .venv/bin/python benchmarks/kernel_table.py
    DEV=CPU .venv/bin/python benchmarks/kernel_table.py --shapes zoo --top 20
"""
from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import time

SHAPES = {  # name: (hidden layers, batch, Double DQN); CartPole: 4 inputs, 2 actions
  "zoo": ((256, 256), 64, False),
  "cleanrl": ((120, 84), 128, False),
  "cartpole-preset": ((256, 256), 128, True),
  "small": ((64, 64), 64, True),
  "cartpole-64": ((64, 64), 128, True),
}
KERNEL_LINE = re.compile(r"\*\*\* CPU\s+\d+\s+(\S+).*?tm\s+([\d.]+)(us|ms)/.*?\(\s*([\d.]+) GFLOPS")


def seeded_agent_and_memory(obs: int, actions: int, **config):
  """A seeded agent for `obs` inputs and `actions` actions (`config`: Config fields), a generator, and a memory of
  10,000 random transitions."""
  import numpy as np
  from tinygrad import Tensor

  from tinydqn.agent import DQNAgent
  from tinydqn.buffers import ReplayBuffer
  from tinydqn.config import Config
  Tensor.manual_seed(0)
  agent = DQNAgent(Config(**config), (obs,), np.dtype(np.float32), actions)
  rng = np.random.default_rng(0)
  memory = ReplayBuffer(10_000, (obs,), np.float32, num_envs=100)
  for _ in range(100):
    memory.add(rng.normal(size=(100, obs)), rng.integers(actions, size=100), rng.normal(size=100),
               rng.normal(size=(100, obs)), rng.random(100) < 0.05, np.zeros(100))
  return agent, rng, memory


def agent_and_memory(shape: str, **config):
  """`seeded_agent_and_memory` for the shape (CartPole: 4 inputs, 2 actions)."""
  hidden, batch, double_q = SHAPES[shape]
  return seeded_agent_and_memory(4, 2, net_arch=hidden, batch_size=batch, double_q=double_q, **config)


def child(shape: str, steps: int) -> None:
  """Runs `steps` gradient steps; the lines tinygrad prints after the marker are the timed ones."""
  agent, rng, memory = agent_and_memory(shape)
  for i in range(steps + 3):
    if i == 3: print("=== timed", flush=True)  # the first calls compile and capture
    memory.sample_into(agent.batch, rng)
    agent.update()


def fused_step_us(agent, rng, memory, per_call: int, calls: int) -> float:
  """Median µs per gradient step of `calls` jitted calls of `per_call` steps each, waited for, sampling excluded."""
  agent.updates(per_call, lambda b: memory.sample_into(b, rng))  # every staged minibatch filled once
  unchanged = lambda b: None  # later calls train on the same minibatches: no sampling inside the timing
  ts = []
  for i in range(calls + 5):
    t = time.perf_counter()
    agent.updates(per_call, unchanged)
    if i >= 5: ts.append((time.perf_counter() - t) / per_call)
  return statistics.median(ts) * 1e6


def child_whole(shape: str, per_call: int, calls: int) -> None:
  """Prints the median µs per gradient step of `calls` jitted calls of `per_call` steps each (after HCQ2 is set)."""
  from tinydqn.fast import use_fast_kernels
  use_fast_kernels()
  agent, rng, memory = agent_and_memory(shape, gradient_steps=per_call, fused_updates=per_call)
  assert agent.fuse == per_call, (agent.fuse, per_call)
  print(f"=== whole {fused_step_us(agent, rng, memory, per_call, calls):.1f}")


def whole_step_us(shape: str, per_call: int) -> float:
  env = {**os.environ, "HCQ2": "1", "TINYDQN_WIDE": "1"}
  env.pop("DEBUG", None)
  out = subprocess.run([sys.executable, __file__, "--child-whole", shape, "--per-call", str(per_call)], env=env,
                       capture_output=True, text=True, check=True).stdout
  return float(out.split("=== whole", 1)[1].split()[0])


def kernel_rows(shape: str, wide: bool, steps: int) -> list[tuple[str, int, float, float]]:
  """(name, launches per step, median µs, median GFLOP/s) per kernel name, slowest total first."""
  env = {**os.environ, "DEBUG": "2", "TINYDQN_WIDE": "1" if wide else "0"}
  env.pop("HCQ2", None)  # DEBUG=2 times each launch; under HCQ2 a jitted call is one launch
  out = subprocess.run([sys.executable, __file__, "--child", shape, "--steps", str(steps)], env=env,
                       capture_output=True, text=True, check=True).stdout
  times: dict[str, list[float]] = {}
  gflops: dict[str, list[float]] = {}
  for line in re.sub(r"\x1b\[[0-9;]*m", "", out.split("=== timed", 1)[1]).splitlines():
    if (m := KERNEL_LINE.search(line)):
      us = float(m.group(2)) * (1000 if m.group(3) == "ms" else 1)
      times.setdefault(m.group(1), []).append(us)
      gflops.setdefault(m.group(1), []).append(float(m.group(4)))
  rows = [(name, round(len(ts) / steps), statistics.median(ts), statistics.median(gflops[name])) for name, ts in times.items()]
  return sorted(rows, key=lambda r: -r[1] * r[2])


def blas_matmuls(shape: str, repeats: int = 200) -> list[tuple[str, int, float]]:
  """(shape label, multiply-adds, µs) for each matmul of one gradient step, numpy/OpenBLAS on one thread."""
  import numpy as np
  from threadpoolctl import threadpool_limits
  hidden, batch, double_q = SHAPES[shape]
  sizes = [4, *hidden, 2]
  rng = np.random.default_rng(0)
  rows = []
  with threadpool_limits(1):
    for layer, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
      x, w, dy = (rng.standard_normal(s, dtype=np.float32) for s in ((batch, n_in), (n_out, n_in), (batch, n_out)))
      products = [(f"fwd {batch}x{n_in}·({n_out}x{n_in})ᵀ", x, w.T)] * (3 if double_q else 2)
      products.append((f"dW ({batch}x{n_out})ᵀ·{batch}x{n_in}", dy.T, x))
      if layer > 0: products.append((f"dx {batch}x{n_out}·{n_out}x{n_in}", dy, w))
      for label, a, b in products:
        for _ in range(20): a @ b
        ts = []
        for _ in range(repeats):
          t = time.perf_counter()
          a @ b
          ts.append(time.perf_counter() - t)
        us = statistics.median(ts) * 1e6
        rows.append((label, batch * n_in * n_out, us))
  return rows


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
  ap.add_argument("--steps", type=int, default=60)
  ap.add_argument("--top", type=int, default=12, help="kernels listed per shape (by total time per step)")
  ap.add_argument("--child", help=argparse.SUPPRESS)
  ap.add_argument("--child-whole", help=argparse.SUPPRESS)
  ap.add_argument("--per-call", type=int, default=1, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.child:
    child(args.child, args.steps)
    return
  if args.child_whole:
    child_whole(args.child_whole, args.per_call, calls=max(20, 3000 // args.per_call))
    return
  for shape in args.shapes.split(","):
    hidden, batch, double_q = SHAPES[shape]
    print(f"\n### {shape}: MLP 4-{'-'.join(map(str, hidden))}-2, batch {batch}{', Double DQN' if double_q else ''}\n")
    tables = {wide: kernel_rows(shape, wide, args.steps) for wide in (False, True)}
    blas = blas_matmuls(shape)
    for wide, rows in tables.items():
      print(f"{'tinydqn.wide_kernels' if wide else 'tinygrad stock'}: kernels by total time per step "
            f"(sum {sum(n * us for _, n, us, _ in rows):.0f} µs over {sum(n for _, n, _, _ in rows)} launches)\n")
      print("| kernel | launches | µs each | GFLOP/s |\n|---|---:|---:|---:|")
      for name, n, us, gf in rows[:args.top]: print(f"| `{name}` | {n} | {us:.1f} | {gf:.0f} |")
      print()
    # tinygrad's matmul kernels: reduce kernels whose loops (the numbers in the name) multiply to one of the step's
    # matmuls' multiply-adds; their GFLOP/s counted like OpenBLAS's, 2 per multiply-add
    macs = {m for _, m, _ in blas}
    for wide, rows in tables.items():
      mm = [(n, us, loops) for name, n, us, _ in rows if name.startswith("r_")
            and any(abs((loops := math.prod(int(d) for d in name.split("_")[1:])) - m) <= 0.01 * m for m in macs)]
      mm_us, mm_flops = sum(n * us for n, us, _ in mm), sum(2 * n * loops for n, _, loops in mm)
      step_us = sum(n * us for _, n, us, _ in rows)
      print(f"{'wide' if wide else 'stock'}: {sum(n for n, _, _ in mm)} matmul kernels, {mm_us:.0f} µs per step, "
            f"{mm_flops / mm_us / 1e3:.0f} GFLOP/s together; all kernels {step_us:.0f} µs")
    blas_us, blas_flops = sum(us for _, _, us in blas), sum(2 * m for _, m, _ in blas)
    print(f"OpenBLAS (1 thread): the step's {len(blas)} matmuls take {blas_us:.0f} µs, {blas_flops / blas_us / 1e3:.0f} GFLOP/s "
          f"together")
    whole = {per_call: whole_step_us(shape, per_call) for per_call in (1, 4, 16)}
    print("whole step as training runs it (wide, HCQ2, direct call, waited for; no sampling): "
          + ", ".join(f"{us:.0f} µs at {n} per call ({us / blas_us:.2f}× OpenBLAS's matmuls)" for n, us in whole.items())
          + "\n")
    print("| matmul | µs | GFLOP/s |\n|---|---:|---:|")
    for label, m, us in blas: print(f"| {label} | {us:.1f} | {2 * m / us / 1e3:.0f} |")


if __name__ == "__main__":
  main()
