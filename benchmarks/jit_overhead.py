"""What a jitted gradient step costs in tinygrad's Python before any kernel runs: the time TinyJit spends preparing
its arguments (`_prepare_jit_inputs`) per call, next to the whole update (sample + call + wait) as
`update_speed.py` times it, µs.

Run it at two commits to compare (the agent stopped passing its staged minibatch as jit arguments in c10a69f):

    HCQ2=1 DEV=CPU .venv/bin/python benchmarks/jit_overhead.py
"""
from __future__ import annotations

import statistics
import sys
import time

import tinygrad.engine.jit as tinygrad_jit

import update_speed

SHAPES = {  # name: config overrides (Double DQN; gradient_steps = steps per jitted call)
  "[64, 64] B64, 1 per call": dict(net_arch=(64, 64), batch_size=64, double_q=True),
  "[64, 64] B64, 16 per call": dict(net_arch=(64, 64), batch_size=64, double_q=True, gradient_steps=16, fused_updates=16),
  "[256, 256] B128, 4 per call": dict(net_arch=(256, 256), batch_size=128, double_q=True, gradient_steps=4),
  "[256, 256] B128, 16 per call": dict(net_arch=(256, 256), batch_size=128, double_q=True, gradient_steps=16,
                                         fused_updates=16),
}


def main() -> None:
  prepare_s: list[float] = []
  original = tinygrad_jit._prepare_jit_inputs
  def timed(args, kwargs):
    t = time.perf_counter()
    out = original(args, kwargs)
    prepare_s.append(time.perf_counter() - t)
    return out
  tinygrad_jit._prepare_jit_inputs = timed
  update_speed.SUITES["jit_overhead"] = (None, SHAPES)
  print("| shape | µs per update | µs preparing jit arguments per call |")
  print("|---|---:|---:|")
  for name in SHAPES:
    prepare_s.clear()
    row = update_speed.measure("jit_overhead", name)
    print(f"| {name} | {row['update_us']:.0f} | {statistics.median(prepare_s) * 1e6:.0f} |", flush=True)


if __name__ == "__main__":
  sys.exit(main())
