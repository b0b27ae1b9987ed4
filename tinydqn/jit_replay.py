"""Replaying a captured tinygrad 0.14 jit as one direct call of its HCQ2 submission program.

Under HCQ2 a captured TinyJit is one CALL: a compiled program (`hcq_submit`) that queues every kernel of the jitted
function for tinygrad's CPU workers. Replaying it through TinyJit costs ≈ 150–300 µs of Python per call (preparing
inputs, walking the call's 60-odd parameters, resolving buffers, building ctypes arguments) around a ≈ 30 µs
ctypes call, and for CleanRL's CartPole configuration that Python was as long as half of the step's kernels
(BENCHMARKS.md, "The jitted call, direct"). The agent's jits take no arguments (their inputs are fixed buffers
filled in place), so everything but the ctypes call is the same on every replay: `DirectReplay` works it out once,
after the capture, and then calls the program with the same arguments. Same program, same buffers, same order: the
kernels and results are the ones TinyJit's replay runs (`tests/test_levers.py` trains bit-identically both ways).

A capture of any other shape (no HCQ2, several calls, jit inputs or variables, a multi-device buffer, tinygrad's
DEBUG ≥ 2 or PROFILE timing, another tinygrad release) keeps TinyJit's own replay. `TINYDQN_DIRECT_JIT=0` turns
the direct call off.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

from tinydqn.wide_kernels import TINYGRAD_VERSION  # the pinned release, whose captured-jit layout is read here


def direct_call(captured: Any) -> Callable[[], None] | None:
  """A function that runs a captured jit's single HCQ2 submission directly, or None when the capture is not of
  that shape (see the module docstring)."""
  from importlib.metadata import version

  from tinygrad.device import Buffer
  from tinygrad.engine.realize import get_runtime, resolve_params
  from tinygrad.helpers import DEBUG, PROFILE, getenv
  from tinygrad.runtime.ops_cpu import CPUProgram
  from tinygrad.uop.ops import Ops
  if version("tinygrad") != TINYGRAD_VERSION or not getenv("HCQ2") or DEBUG >= 2 or PROFILE: return None
  if os.environ.get("TINYDQN_DIRECT_JIT", "1") == "0" or len(captured.linear.src) != 1: return None
  call = captured.linear.src[0]
  function = call.src[0]
  if call.op is not Ops.CALL or function.op is not Ops.CUSTOM_FUNCTION or function.arg != "hcq": return None
  program, info = function.src[0], call.arg.aux
  if program.op is not Ops.PROGRAM or info.inputs is not None or info.input_idxs or program.arg.vars: return None
  if program.arg.runtimevars or program.arg.global_size[0] != 1 or len(info.device) != 1: return None
  buffers = [u.buffer for u in (resolve_params(call, ())[i] for i in program.arg.globals)]
  if not all(isinstance(b, Buffer) for b in buffers): return None  # a MultiBuffer: one lane per device
  runtime = get_runtime(info.device[0], program)
  if not isinstance(runtime, CPUProgram) or runtime.lvp: return None
  args = [ctypes.c_uint64(b.ensure_allocated().get_buf(info.device[0]).va_addr) for b in buffers]
  submit = runtime.fxn
  return lambda: submit(*args)


class DirectReplay:
  """A TinyJit that, once captured, replays through `direct_call` where it can. Call it like the jit (no
  arguments); it returns what the jit returns (the captured output tensors)."""

  def __init__(self, jit: Any):
    self.jit = jit
    self._direct: Callable[[], None] | None = None
    self._looked = False  # whether the capture was examined

  def __call__(self) -> Any:
    if self._direct is not None:
      self._direct()
      return self.jit.captured.ret
    out = self.jit()
    if not self._looked and self.jit.captured is not None:
      self._direct, self._looked = direct_call(self.jit.captured), True
    return out
