"""Resident memory per stored Atari transition in FrameReplayBuffer, measured, and extrapolated to 1M.

Fills the buffer with N transitions of 4×84×84 uint8 stacks (random frames, a new episode every 1000 steps)
and reads the process's resident set size (RSS) before and after, so untouched preallocated pages do not count.

    .venv/bin/python benchmarks/replay_memory.py --transitions 200000
"""
from __future__ import annotations

import argparse
import os

import numpy as np


def rss_bytes() -> int:
  with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--transitions", type=int, default=200_000)
  n = ap.parse_args().transitions
  from tinydqn.frame_buffer import FrameReplayBuffer
  rng = np.random.default_rng(0)
  pool = rng.integers(0, 256, (64, 84, 84), dtype=np.uint8)  # frames to copy from (drawing each would be slow)
  before = rss_bytes()
  buf = FrameReplayBuffer(n, (4, 84, 84), np.uint8)
  stack = np.repeat(pool[:1], 4, axis=0)[None]
  for t in range(n):
    end = (t + 1) % 1000 == 0
    nxt = np.concatenate([stack[:, 1:], pool[None, None, t % 64]], axis=1)
    buf.add(stack, [0], [0.0], nxt, [end], [False])
    stack = np.repeat(pool[None, None, (t + 7) % 64], 4, axis=1) if end else nxt
  per = (rss_bytes() - before) / n
  print("\n| stored | RSS growth | bytes per transition | 1M transitions (extrapolated) |\n|---:|---:|---:|---:|")
  print(f"| {n:,} | {per * n / 1e9:.3f} GB | {per:.0f} | {per * 1e6 / 1e9:.2f} GB ({per * 1e6 / 2**30:.2f} GiB) |")
  print(f"\nfor comparison, 1M transitions stored as stacks: obs only {4 * 84 * 84 * 1e6 / 1e9:.1f} GB, "
        f"obs and next_obs {8 * 84 * 84 * 1e6 / 1e9:.1f} GB")


if __name__ == "__main__":
  main()
