"""The Nature CNN's gradient step on the CPU (the `atari` preset: batch 32, Adam, Huber, gradient clipping at 10):
tinygrad's convolution against tinydqn's convolutions as matrix products (`tinydqn.conv.conv_relu`), the optimizer
state in one buffer or per parameter (`tinydqn.agent.fused_optimizer`), and PyTorch's step on the same machine when
a Python with torch is given (with its default threads and with one). Each variant runs in child processes,
alternating rounds (the machine's speed drifts); the table has the median ms per step.

    DEV=CPU .venv/bin/python benchmarks/conv_step.py --torch-python benchmarks/.sb3-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = {  # name: (environment, convolutions as products, optimizer state in one buffer whatever the size)
  "stock kernels, tinygrad's convolution": ({"TINYDQN_WIDE": "0"}, False, True),
  "wide kernels, tinygrad's convolution": ({"TINYDQN_WIDE": "1"}, False, True),
  "wide kernels, convolutions as products": ({"TINYDQN_WIDE": "1"}, True, True),
  "the same, optimizer state per parameter (default)": ({"TINYDQN_WIDE": "1"}, True, False),
}
OBS, ACTIONS = (4, 84, 84), 6


def tinydqn_child(as_products: bool, fused: bool, steps: int) -> dict:
  from tinydqn.fast import use_fast_kernels
  use_fast_kernels("CPU")
  import numpy as np
  from tinygrad import Tensor

  import tinydqn.agent
  import tinydqn.conv
  if not as_products: tinydqn.conv.convs_as_products = lambda device: False
  if fused: tinydqn.agent.FUSED_OPTIMIZER_MAX_PARAMS = 10**9  # as before the choice went by size
  from tinydqn.agent import DQNAgent
  from tinydqn.config import make_config
  Tensor.manual_seed(0)
  agent = DQNAgent(make_config("PongNoFrameskip-v4", buffer_size=10_000), OBS, np.dtype(np.uint8), ACTIONS)
  rng, batch = np.random.default_rng(0), agent.batch
  def sample() -> None:
    batch.obs[:], batch.next_obs[:] = (rng.integers(0, 256, batch.obs.shape, dtype=np.uint8) for _ in range(2))
    batch.actions[:], batch.rewards[:] = rng.integers(ACTIONS, size=batch.actions.shape), rng.normal(size=batch.rewards.shape)
    batch.discounts[:], batch.weights[:] = 0.99, 1.0
  start = time.perf_counter()
  for _ in range(3):  # the first calls build, capture and compile the step
    sample()
    agent.read(agent.update())
  setup, times = time.perf_counter() - start, []
  for _ in range(steps):
    sample()
    t = time.perf_counter()
    agent.read(agent.update())  # reading the loss waits for the step's kernels
    times.append(time.perf_counter() - t)
  return {"ms": statistics.median(times) * 1e3, "setup_s": setup}


TORCH_CHILD = """
import json, statistics, sys, time
import torch
from torch import nn
steps, threads = int(sys.argv[1]), int(sys.argv[2])
if threads: torch.set_num_threads(threads)
torch.manual_seed(0)
def net():
  return nn.Sequential(nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1),
                       nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 6))
online, target = net(), net()
target.load_state_dict(online.state_dict())
opt = torch.optim.Adam(online.parameters(), lr=1e-4)
def sample():  # outside the timed step, as tinydqn's minibatch is
  obs, next_obs = (torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8) for _ in range(2))
  return obs, next_obs, torch.randint(6, (32,)), torch.randn(32)
def step(obs, next_obs, actions, rewards):
  with torch.no_grad(): y = rewards + 0.99 * target(next_obs.float() / 255).max(1).values
  q = online(obs.float() / 255).gather(1, actions[:, None])[:, 0]
  loss = nn.functional.smooth_l1_loss(q, y)
  opt.zero_grad()
  loss.backward()
  nn.utils.clip_grad_norm_(online.parameters(), 10.0)
  opt.step()
  return loss.item()
for _ in range(3): step(*sample())
times = []
for _ in range(steps):
  batch = sample()
  t = time.perf_counter(); step(*batch); times.append(time.perf_counter() - t)
print(json.dumps({"ms": statistics.median(times) * 1e3, "threads": torch.get_num_threads()}))
"""


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=20, help="timed gradient steps per child")
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--torch-python", help="a Python with torch (e.g. the SB3 venv): PyTorch's step as the reference")
  ap.add_argument("--child", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.child is not None:
    conv, optimizer = args.child.split(",")
    print(json.dumps(tinydqn_child(conv == "products", optimizer == "fused", args.steps)))
    return
  runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
  torch_rows = {"PyTorch, its default threads": 0, "PyTorch, 1 thread (tinygrad uses one core)": 1}
  if args.torch_python: runs.update({name: [] for name in torch_rows})
  for _ in range(args.rounds):
    for name, (env, as_products, fused) in VARIANTS.items():
      child = f"{'products' if as_products else 'tinygrad'},{'fused' if fused else 'by-size'}"
      cmd = [sys.executable, __file__, "--child", child, "--steps", str(args.steps)]
      out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "DEV": "CPU", **env})
      runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
      print(name, runs[name][-1], file=sys.stderr, flush=True)
    for name, threads in torch_rows.items() if args.torch_python else ():
      out = subprocess.run([args.torch_python, "-c", TORCH_CHILD, str(args.steps), str(threads)], capture_output=True,
                           text=True, check=True)
      runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
      print(name, runs[name][-1], file=sys.stderr, flush=True)
  first = statistics.median(r["ms"] for r in runs[next(iter(VARIANTS))])
  print(f"\nNature CNN gradient step, batch 32, CPU: median of {args.steps} steps per run, {args.rounds} rounds\n")
  print("| variant | ms per step (median) | × the first row | runs (ms) |\n|---|---:|---:|---|")
  for name, rows in runs.items():
    median = statistics.median(r["ms"] for r in rows)
    print(f"| {name} | {median:.1f} | {median / first:.2f} | {', '.join(format(r['ms'], '.1f') for r in rows)} |")


if __name__ == "__main__":
  main()
