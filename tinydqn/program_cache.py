"""Compiled CPU kernels kept on disk between processes, so a network shape is turned into code once per machine.

tinygrad 0.14 caches the clang binary of a kernel's source on disk, but not the Python work before it: lowering,
optimizing and rendering each new kernel (its `to_program`) takes 0.1-0.4 s, and a DQN run needs about 70 of them
(weight initialisation, the gradient step, acting, the target sync). Every new process paid that again; it was
most of the time a short CartPole run spent before its first gradient step (BENCHMARKS.md, "Start-up").

`install()` puts a write-through layer in front of tinygrad's in-memory program cache: a CPU program that is not
in memory is looked up in tinygrad's own disk cache (its sqlite file, `CACHEDB`) before it is built, and every
program built is stored there. The key is tinygrad's own cache key (the kernel's AST, the renderer and its target,
the code-generation settings) plus what else changes the generated code: the tinygrad release, whether
`tinydqn.wide_kernels` is installed and its source, and this CPU's model and flags (the binaries are built for
the CPU they run on). A program read back is the one that was built, so results are unchanged. Only the CPU
device's programs are stored; `TINYDQN_PROGRAM_CACHE=0` or tinygrad's `CACHELEVEL=0` turn the disk layer off.
"""
from __future__ import annotations

import functools
import hashlib
import os

TABLE = "tinydqn_programs"


@functools.cache
def _machine_signature() -> str:
  """The tinygrad release, this CPU's model and feature flags, and the wide-kernel rules' source."""
  from importlib.metadata import version

  from tinydqn import wide_kernels
  with open(wide_kernels.__file__, "rb") as f: rules = hashlib.sha256(f.read()).hexdigest()
  return f"{version('tinygrad')}|{''.join(wide_kernels.cpu_description())}|{rules}"


def disk_key(key: tuple) -> str | None:
  """The disk cache's key for one of tinygrad's `to_program_key`s, or None for programs not kept on disk (other devices,
  and every program where /proc/cpuinfo does not identify the CPU: -mcpu=native code must not run on another)."""
  from tinydqn import wide_kernels
  ast_key, renderer_type, target, *settings = key
  if getattr(target, "device", None) != "CPU": return None
  if not wide_kernels.cpu_description(): return None  # a CPU that cannot be told apart from another: build, never share
  text = "|".join([ast_key.hex(), f"{renderer_type.__module__}.{renderer_type.__qualname__}", repr(target), repr(settings),
                   f"wide={wide_kernels._installed}", _machine_signature()])
  return hashlib.sha256(text.encode()).hexdigest()


class DiskBackedPrograms(dict):
  """tinygrad's program cache (`to_program_key` -> compiled PROGRAM) with misses filled from, and additions written
  to, tinygrad's disk cache."""

  def _load(self, key: tuple):
    from tinygrad.helpers import diskcache_get
    if (dk := disk_key(key)) is None: return None
    # an entry that cannot be read back (written by another version, a damaged or locked cache file) is built again
    try: program = diskcache_get(TABLE, dk)
    except Exception: return None
    if program is not None: super().__setitem__(key, program)
    return program

  def __contains__(self, key) -> bool: return super().__contains__(key) or self._load(key) is not None

  def __missing__(self, key):
    if (program := self._load(key)) is None: raise KeyError(key)
    return program

  def get(self, key, default=None):
    program = super().get(key)
    if program is None: program = self._load(key)
    return default if program is None else program

  def __setitem__(self, key, program) -> None:
    super().__setitem__(key, program)
    from tinygrad.helpers import diskcache_put
    if (dk := disk_key(key)) is not None:
      try: diskcache_put(TABLE, dk, program)
      except Exception: pass  # not storable, or the cache file not writable: built again next time


def wanted() -> bool:
  return os.environ.get("TINYDQN_PROGRAM_CACHE", "1") != "0"


def install() -> bool:
  """Puts `DiskBackedPrograms` in place of tinygrad's in-memory program cache (once per process). Returns whether
  it is in place."""
  import tinygrad.codegen as codegen
  import tinygrad.engine.realize as realize
  if isinstance(codegen.to_program_cache, DiskBackedPrograms): return True
  if not wanted() or realize.to_program_cache is not codegen.to_program_cache: return False  # not the 0.14 layout
  programs = DiskBackedPrograms(codegen.to_program_cache)
  codegen.to_program_cache = realize.to_program_cache = programs
  return True
