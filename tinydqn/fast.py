"""tinygrad settings for speed that are read once, when tinygrad is imported (so they cannot be config fields).

- `HCQ2=1` (on by default for CPU training from the command line): tinygrad's command queue for the CPU; a whole
  jitted call is one submission instead of one Python launch per kernel. Bit-identical results (tested). CPU only:
  it is not set when another device is named.
- `BEAM=2` (`train --fast`): tinygrad's kernel search. The first run for a network shape times candidate kernels
  (minutes on two cores); the choice is cached per machine. Searched kernels may round differently, so such a run
  is reproducible with the same kernel cache, not across machines. Under BEAM, tinygrad's search picks every
  kernel's tiling, including the matmuls `tinydqn.wide_kernels` would otherwise tile by rule.
- `TINYDQN_WIDE=0` keeps tinygrad's stock CPU kernels and convolutions (see `tinydqn.wide_kernels` and
  `tinydqn.conv.conv_relu`, on by default for CPU agents).

Figures: BENCHMARKS.md, "CPU kernels". `wait_for_device` is how the agent waits for HCQ2's asynchronous kernels
without taking a core from them.
"""
from __future__ import annotations

import os
import sys
import time

DEFAULT_LEVERS = {"HCQ2": "1"}  # CPU only
SEARCH_LEVERS = {"BEAM": "2"}


def use_fast_kernels(device: str | None = None, search: bool = False) -> dict[str, str]:
  """Sets HCQ2 (for the CPU device) and, with `search`, BEAM in the environment (values already set by the user
  win) and returns what is now set. Must run before tinygrad is first imported; `device` (or DEV) naming a non-CPU
  device leaves HCQ2 out."""
  if "tinygrad" in sys.modules:
    raise RuntimeError("use_fast_kernels() must run before tinygrad is imported (it reads HCQ2 and BEAM at import)")
  os.environ.update(fast_levers(device, search))
  return {name: os.environ[name] for name in (*DEFAULT_LEVERS, *SEARCH_LEVERS) if name in os.environ}


def fast_levers(device: str | None = None, search: bool = False) -> dict[str, str]:
  """The variables `use_fast_kernels` sets, with the values it would set them to (the environment's where it has
  them), for a process of its own, e.g. a sweep's workers."""
  named = (device or os.environ.get("DEV") or "CPU").split(":")[0].upper()
  levers = {**(DEFAULT_LEVERS if named == "CPU" else {}), **(SEARCH_LEVERS if search else {})}
  return {name: os.environ.get(name, value) for name, value in levers.items()}


_warned_without_queue = False


def warn_without_command_queue(device: str) -> None:
  """One warning per process when training starts on the CPU and nobody chose HCQ2: from Python, tinygrad was
  imported without `use_fast_kernels()` (`tinydqn train` and sweeps set it), so each kernel of a jitted step is
  launched from Python, several times slower for small networks. Setting HCQ2 either way (`HCQ2=0` keeps the stock
  path) silences it."""
  global _warned_without_queue
  if _warned_without_queue or device.split(":")[0] != "CPU" or "HCQ2" in os.environ: return
  import warnings
  warnings.warn("tinygrad runs this CPU agent without its command queue (HCQ2), launching each kernel from Python: "
                "call tinydqn.fast.use_fast_kernels() before tinygrad is first imported (set HCQ2=0 to keep the "
                "stock path without this warning)", stacklevel=5)  # the line that called train() or resume()
  _warned_without_queue = True


def wide_kernels_wanted(device: str) -> bool:
  """Whether agents on `device` compile with `tinydqn.wide_kernels` (and compute convolutions as products): on the
  CPU unless TINYDQN_WIDE=0."""
  return device.split(":")[0] == "CPU" and os.environ.get("TINYDQN_WIDE", "1") != "0"


YIELDING_WAIT_S = 2e-3  # how long wait_for_device polls with sched_yield before it sleeps between polls


def wait_for_device(device: str, timeout_s: float = 600.0) -> None:
  """`Device[device].synchronize()`, without HCQ2's busy wait while its workers still have kernels queued.

  HCQ2's synchronize spins in Python while its worker threads run the kernels, so the spin takes a core away from
  them when two runs share two cores (BENCHMARKS.md, "The Rainbow step made cheaper"). Here the first
  `YIELDING_WAIT_S` poll with `os.sched_yield()`, which hands the core to any thread that wants it and otherwise
  returns at once: a small network's step (hundreds of µs) is noticed as soon as it ends, where a 0.1 ms sleep
  added ≈ 100 µs per step (BENCHMARKS.md, "The jitted call, direct"). Longer waits poll every ≈ 0.1 ms, small
  next to such a step. Other devices synchronize as before. A queue that has not drained after `timeout_s` (a hung
  worker) raises TimeoutError instead of waiting forever."""
  from tinygrad import Device  # here: importing tinygrad at module level would fix HCQ2 and BEAM too early
  dev = Device[device]
  start = time.monotonic()
  for put, done in _queue_counters(dev):
    while done[0] < put[0]:
      waited = time.monotonic() - start
      if waited > timeout_s: raise TimeoutError(f"device {device} still has kernels queued after {timeout_s:g} s")
      if waited < YIELDING_WAIT_S: os.sched_yield()
      else: time.sleep(1e-4)
  dev.synchronize()  # returns at once now, apart from its own bookkeeping (and checks all queues again)


_counters: dict[int, tuple[int, list]] = {}


def _queue_counters(dev) -> list:
  """(put, done) views of each HCQ2 worker queue of `dev` (none on other devices), kept per device while its
  workers stay the same."""
  workers = getattr(dev, "workers", ())
  cached = _counters.get(id(dev))
  if cached is None or cached[0] != len(workers):
    views = [tuple(getattr(w, name)._buf.cpu_view().view(fmt="Q") for name in ("put", "done")) for w in workers]
    _counters[id(dev)] = cached = (len(workers), views)
  return cached[1]
