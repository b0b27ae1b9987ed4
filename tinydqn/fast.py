"""Opt-in speed levers of tinygrad that are read once, when tinygrad is imported (so they cannot be config fields).

- `HCQ2=1`: tinygrad's command queue for the CPU; a whole jitted call is one submission instead of one Python
  launch per kernel. Experimental in tinygrad: CPU only here (it is not applied when another device is named).
- `BEAM=2`: tinygrad's kernel search. The first run for a network shape times candidate kernels (minutes on two
  cores); the choice is cached per machine, and later runs start at once. Searched kernels may round differently
  from the stock ones, so a run is reproducible with the same kernel cache, not across machines.

Measured on the reference 2-core CPU: about 2× faster gradient steps (BENCHMARKS.md, "The gradient step").
`wait_for_device` is how the agent waits for HCQ2's asynchronous kernels without taking a core from them.
"""
from __future__ import annotations

import os
import sys
import time

LEVERS = {"HCQ2": "1", "BEAM": "2"}


def use_fast_kernels(device: str | None = None) -> dict[str, str]:
  """Sets the levers in the environment (values already set by the user win) and returns what is now set. Must run
  before tinygrad is first imported; `device` (or DEV) naming a non-CPU device leaves HCQ2 out."""
  if "tinygrad" in sys.modules:
    raise RuntimeError("use_fast_kernels() must run before tinygrad is imported (it reads HCQ2 and BEAM at import)")
  named = (device or os.environ.get("DEV") or "CPU").split(":")[0].upper()
  for name, value in LEVERS.items():
    if name == "HCQ2" and named != "CPU": continue
    os.environ.setdefault(name, value)
  return {name: os.environ[name] for name in LEVERS if name in os.environ}


def wide_kernels_wanted() -> bool:
  """Whether CPU agents compile with `tinydqn.wide_kernels` (on unless TINYDQN_WIDE=0)."""
  return os.environ.get("TINYDQN_WIDE", "1") != "0"


def wait_for_device(device: str) -> None:
  """`Device[device].synchronize()`, sleeping instead of spinning while HCQ2's workers still have kernels queued.

  HCQ2's synchronize busy-waits in Python while its worker threads run the kernels, so the spin takes a core away
  from them: two HCQ2 runs on two cores took 12–13 ms per Rainbow step each, 6.4 ms alone; with this wait, 7.0 ms.
  Polling every ≈0.1 ms is small next to a gradient step. Other devices synchronize as before."""
  from tinygrad import Device  # here: importing tinygrad at module level would fix HCQ2 and BEAM too early
  dev = Device[device]
  for worker in getattr(dev, "workers", ()):  # HCQ2's CPU device
    put, done = (getattr(worker, name)._buf.cpu_view().view(fmt="Q") for name in ("put", "done"))
    while done[0] < put[0]: time.sleep(1e-4)
  dev.synchronize()  # returns at once now, apart from its own bookkeeping
