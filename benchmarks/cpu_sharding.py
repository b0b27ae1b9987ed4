"""Can a second core help tinygrad's CPU backend? Data-parallel training over two CPU devices against one.

tinygrad 0.14 runs each CPU device's kernels on that device's one worker thread, so a single device uses one
core. This times one jitted Adam step of an MLP (4-H-H-2, MSE) with the batch on CPU:0, and with the batch split
over CPU:0 and CPU:1 (weights replicated, gradients all-reduced), each in its own process.

    HCQ2=1 .venv/bin/python benchmarks/cpu_sharding.py                      # DQN-sized: H 256, batch 64
    HCQ2=1 .venv/bin/python benchmarks/cpu_sharding.py --hidden 512 --batch 2048
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def measure(devices: int, hidden: int, batch: int, steps: int) -> float:
  os.environ.setdefault("DEV", "CPU")  # else tinygrad picks CL for these tensors where POCL is installed
  from tinygrad import Context, Device, Tensor, TinyJit, nn
  from tinygrad.nn.state import get_parameters
  names = tuple(f"CPU:{i}" for i in range(devices))
  Tensor.manual_seed(0)
  layers = [nn.Linear(4, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 2)]
  params = get_parameters(layers)
  x, y = Tensor.randn(batch, 4).contiguous(), Tensor.randn(batch, 2).contiguous()
  if devices > 1:
    for p in params: p.to_(names)
    x, y = x.shard(names, axis=0).contiguous(), y.shard(names, axis=0).contiguous()
  Tensor.realize(x, y)
  opt = nn.optim.Adam(params, lr=1e-3)

  @TinyJit
  def step() -> Tensor:
    opt.zero_grad()
    loss = ((layers[2](layers[1](layers[0](x).relu()).relu()) - y) ** 2).mean()
    loss.backward()
    opt.step()
    return loss.realize()

  with Context(TRAINING=1):
    for _ in range(5): step()  # capture
    for d in names: Device[d].synchronize()
    t = time.perf_counter()
    for _ in range(steps): step()
    for d in names: Device[d].synchronize()
  return (time.perf_counter() - t) / steps


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--hidden", type=int, default=256)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--steps", type=int, default=300)
  ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.child:
    print(measure(args.child, args.hidden, args.batch, args.steps))
    return
  times = {}
  for devices in (1, 2):
    out = subprocess.run([sys.executable, __file__, "--child", str(devices), "--hidden", str(args.hidden),
                          "--batch", str(args.batch), "--steps", str(args.steps)], capture_output=True, text=True,
                         check=True, env=os.environ)
    times[devices] = float(out.stdout.strip().splitlines()[-1])
  print(f"\nMLP 4-{args.hidden}-{args.hidden}-2, batch {args.batch}, Adam, {args.steps} jitted steps; "
        f"HCQ2={os.environ.get('HCQ2', '0')} BEAM={os.environ.get('BEAM', '0')}\n")
  print("| CPU devices | ms per step | × one device |\n|---|---:|---:|")
  for devices, seconds in times.items(): print(f"| {devices} | {seconds * 1e3:.2f} | {seconds / times[1]:.2f} |")


if __name__ == "__main__":
  main()
