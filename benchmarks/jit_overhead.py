"""What a jitted gradient step costs in tinygrad's Python before any kernel runs: the time TinyJit spends preparing
its arguments (`_prepare_jit_inputs`) per call, next to the whole step (sample + call + wait), µs.

Run it at two commits to compare (the agent stopped passing its staged minibatch as jit arguments in c10a69f):

    HCQ2=1 DEV=CPU .venv/bin/python benchmarks/jit_overhead.py
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import tinygrad.engine.jit as tinygrad_jit

SHAPES = [  # (hidden layers, batch, gradient steps per jitted call)
  ((64, 64), 64, 1), ((64, 64), 64, 16), ((256, 256), 128, 4), ((256, 256), 128, 16)]


def measure(net_arch: tuple[int, ...], batch_size: int, fuse: int, calls: int = 300) -> tuple[float, float]:
  from tinydqn.agent import DQNAgent
  from tinydqn.buffers import ReplayBuffer
  from tinydqn.config import Config
  prepare_s: list[float] = []
  original = tinygrad_jit._prepare_jit_inputs
  def timed(args, kwargs):
    t = time.perf_counter()
    out = original(args, kwargs)
    prepare_s.append(time.perf_counter() - t)
    return out
  tinygrad_jit._prepare_jit_inputs = timed
  config = Config(net_arch=net_arch, batch_size=batch_size, double_q=True, gradient_steps=fuse, fused_updates=fuse)
  agent = DQNAgent(config, (4,), np.dtype(np.float32), 2)
  rng = np.random.default_rng(0)
  memory = ReplayBuffer(10_000, (4,), np.float32, num_envs=100, n_step=1, gamma=0.99)
  for _ in range(100):
    memory.add(rng.normal(size=(100, 4)), rng.integers(2, size=100), rng.normal(size=100), rng.normal(size=(100, 4)),
               rng.random(100) < 0.05, np.zeros(100))
  sample = lambda batch: memory.sample_into(batch, rng)
  for _ in range(30): agent.updates(fuse, sample)  # capture, warm up
  prepare_s.clear()
  step_s = []
  for _ in range(calls):
    t = time.perf_counter()
    agent.updates(fuse, sample)
    step_s.append((time.perf_counter() - t) / fuse)
  tinygrad_jit._prepare_jit_inputs = original
  return statistics.median(step_s) * 1e6, statistics.median(prepare_s) * 1e6


def main() -> None:
  print("| network | batch | steps per call | µs per step | µs preparing jit arguments per call |")
  print("|---|---:|---:|---:|---:|")
  for net_arch, batch, fuse in SHAPES:
    step_us, prepare_us = measure(net_arch, batch, fuse)
    print(f"| {list(net_arch)} | {batch} | {fuse} | {step_us:.0f} | {prepare_us:.0f} |", flush=True)


if __name__ == "__main__":
  sys.exit(main())
