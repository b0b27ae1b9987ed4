"""Wide CPU kernels for tinygrad 0.14: vectors as wide as the CPU's, and matmul tiles chosen by rule.

tinygrad 0.14 leaves most of a modern x86 core unused on its CPU device (BENCHMARKS.md, "CPU kernels"):
- its late memory coalescing groups float loads and stores into at most 4 lanes on every device but the DSP, so
  clang emits 128-bit FMAs on CPUs that have 256- or 512-bit ones;
- its hand-coded heuristic upcasts output axes by 3 or 4 and unrolls reductions by 4 at most, and its BEAM search
  never tries 8- or 16-wide tiles.

`install()` changes, on the CPU device's clang renderer only (every other device stays stock):
1. float loads and stores are grouped into up to `vector_lanes()` lanes (16 with AVX-512, 8 with AVX/AVX2);
2. vector types wider than 16 bytes are declared with 16-byte alignment, so clang emits unaligned vector loads
   (as fast on aligned data) and a buffer that is only 16-byte aligned, e.g. numpy's, never faults;
3. kernels with one ADD reduction of one or two inputs (matmuls, column and row sums) get a register tile chosen
   by rule (`_reduce_tile`), elementwise float kernels one full vector per iteration (`_elementwise_tile`); every
   other kernel keeps tinygrad's heuristic.
Kernels are chosen by rule, not by timing, so a run is reproducible on any machine with the same vector width.
Results equal the stock kernels' within float rounding (the sums are associated differently). tinygrad is imported
inside the functions: importing this module must not start tinygrad (HCQ2 is read when tinygrad starts).
"""
from __future__ import annotations

import functools
import itertools
import platform
from collections import defaultdict

TINYGRAD_VERSION = "0.14.0"  # the internals patched here are those of this release


def lanes_for(machine: str, flags: list[str]) -> int:
  """float32 lanes of the widest vector unit a CPU with these `/proc/cpuinfo` flags has: 16 (AVX-512F), 8 (AVX),
  else 4 (SSE, NEON: what tinygrad's stock grouping already uses)."""
  if machine.lower() not in ("x86_64", "amd64"): return 4
  return 16 if "avx512f" in flags else 8 if "avx" in flags else 4


# The /proc/cpuinfo lines that tell CPUs apart: x86's model and flags, and what ARM kernels print instead (aarch64
# usually has neither `model name` nor `flags`, but its implementer, part and revision, and `Features`).
CPU_IDENTITY_LINES = ("model name", "flags", "Features", "CPU implementer", "CPU architecture", "CPU variant", "CPU part",
                      "CPU revision")


@functools.cache
def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
  """This CPU's distinct identity lines of `cpuinfo` (CPU_IDENTITY_LINES), in file order; none where the file is
  missing or says nothing of them."""
  try:
    with open(cpuinfo) as f: return tuple(dict.fromkeys(line for line in f if line.startswith(CPU_IDENTITY_LINES)))
  except OSError: return ()


@functools.cache
def vector_lanes() -> int:
  """`lanes_for` this machine."""
  flags = next((line.split(":", 1)[1].split() for line in cpu_description() if line.startswith("flags")), [])
  return lanes_for(platform.machine(), flags)


def _lane_choices(buf, lanes: int) -> tuple[int, ...]:
  """How many lanes a group of loads or stores on `buf` may take, widest first."""
  from tinygrad.dtype import AddrSpace, dtypes
  if buf.addrspace == AddrSpace.REG: return (1,)
  if buf.dtype == dtypes.float: return tuple(w for w in (16, 8, 4, 2) if w <= lanes) + (1,)
  if buf.dtype in (dtypes.half, dtypes.int, dtypes.uint, *dtypes.fp8s): return (4, 2, 1)  # as stock
  return (1,)


def _wide_coalescing(sink, ren, lanes: int):
  """Late memory coalescing with float groups up to `lanes` wide: loads (stores) of one buffer whose indices
  differ only by consecutive constants become one vector load (store) where the first index divides the width."""
  from tinygrad.dtype import AddrSpace, Invalid
  from tinygrad.uop.ops import Ops, UOp
  accesses: defaultdict[tuple, dict[int, list]] = defaultdict(dict)  # (op, buf, base, valid) -> offset -> uops
  for u in sink.toposort():
    if u.op not in (Ops.LOAD, Ops.STORE): continue
    buf, index = u.src[0].src
    if buf.addrspace == AddrSpace.REG: continue
    idx, valid = index.get_idx(), index.get_valid()
    if idx.op is Ops.ADD and idx.src[1].op is Ops.CONST: base, offset = idx.src[0], idx.src[1].val
    elif idx.op is Ops.ADD and idx.src[0].op is Ops.CONST: base, offset = idx.src[1], idx.src[0].val
    elif idx.op is Ops.CONST: base, offset = (None, 0) if idx.val is Invalid else (None, idx.val)
    else: base, offset = idx, 0
    accesses[(u.op, buf, base, valid)].setdefault(offset, []).append(u)
  replacements = {}
  for (op, buf, base, valid), by_offset in accesses.items():
    choices = _lane_choices(buf, lanes)
    offsets = sorted(by_offset)
    runs = [[o for _, o in run] for _, run in itertools.groupby(enumerate(offsets), lambda p: p[1] - p[0])]
    for run in runs:
      while run:
        start = base + run[0] if base is not None else UOp.const(run[0])
        width = next(w for w in choices if w <= len(run) and start.divides(w) is not None)
        group, run = run[:width], run[width:]
        start = start.valid(valid) if valid is not None else start
        target = UOp(Ops.SHRINK, src=(buf, start, UOp.const(width))) if width > 1 else buf.index(start)
        if op is Ops.STORE:
          assert all(len(by_offset[o]) == 1 for o in group), "two stores to one address"
          values = [by_offset[o][0].src[1] for o in group]
          store = target.store(UOp.stack(*values) if width > 1 else values[0])
          replacements.update({by_offset[o][0]: store for o in group})
        else:
          vector = target.load()
          for lane, o in enumerate(group):
            replacements.update({u: vector.index(lane) if width > 1 else vector for u in by_offset[o]})
  return sink.substitute(replacements, name="wide memory coalescing")


def _stride(idx, rng) -> int | None:
  """The constant step of an index expression along one loop variable: 0 if it does not appear, None if it
  appears other than as `rng` or `rng * const` in the index's sum."""
  from tinygrad.uop.ops import Ops
  if rng not in idx.backward_slice_with_self: return 0
  total = 0
  for term in idx.split_uop(Ops.ADD):
    if term is rng: total += 1
    elif term.op is Ops.MUL and rng in term.src and (c := term.src[1 - term.src.index(rng)]).op is Ops.CONST: total += c.arg
    elif rng in term.backward_slice_with_self: return None
  return total


def _reduce_tile(k, lanes: int):
  """A register tile for a kernel shaped like C[m, n] = Σ_r A[m, r]·B[r, n], c[n] = Σ_r B[r, n] or c[n] = Σ_r B[n, r]
  (plus fused elementwise work), or None when the kernel is not of that shape or a tile does not fit. n is the output axis with
  unit stride, m another output axis along which B does not move; the reduction is unrolled by 4.
  - B moves along n in unit steps (NN, TN, column sums): n takes up to 16 floats (two AVX2 vectors), m up to 8
    rows (12, 9 or 3 where 8 do not divide m and n takes one vector); vector loads of B.
  - both inputs move along r in unit steps (NT, e.g. x·Wᵀ with W stored [out, in]): 8 × 8, rows loaded 4 wide
    along r and transposed in registers; the vector runs along n, or along m when 8 does not divide n.
  - row sums (one input moving along r in unit steps): 8 rows side by side.
  - matrix-vector products W·x with W stored [n, r] (no m: a batch of one): 16 rows side by side."""
  from tinygrad.codegen.opt import KernelOptError, Opt, OptOps
  from tinygrad.uop.ops import Ops
  reduces = [u for u in k.ast.backward_slice if u.op is Ops.REDUCE]
  if len(reduces) != 1 or reduces[0].arg[0] is not Ops.ADD or len(k.unrollable_dims) != 1: return None
  stores = [u.src[0] for u in k.ast.backward_slice if u.op is Ops.STORE]
  if len(stores) != 1: return None
  reduced = k.rngs[k.unrollable_dims[0]]
  # the reduced inputs; others (a bias, a ReLU mask) are elementwise work on the tile and do not shape it
  operands = [b.src[1].get_idx() for b in k.bufs if b not in stores and reduced in b.src[1].get_idx().backward_slice_with_self]
  if len(operands) not in (1, 2): return None
  axes = k.upcastable_dims
  unit = [a for a in axes if _stride(stores[0].src[1].get_idx(), k.rngs[a]) == 1]
  if not unit: return None
  n = unit[0]
  rows = [a for a in axes if a != n and any(_stride(idx, k.rngs[a]) == 0 for idx in operands)]
  m = max(rows, key=lambda a: k.full_shape[a]) if rows else None
  if len(operands) == 2 and m is None:  # matrix-vector: W·x with W stored [n, r], e.g. acting on one observation
    if not (all(_stride(idx, reduced) == 1 for idx in operands) and any(_stride(idx, k.rngs[n]) == 0 for idx in operands)):
      return None
    # 16 rows side by side (16 independent sums; stock: one chain of dependent adds), loaded 4 wide along r
    tiles = [(n, _divisor(k.full_shape[n], (16, 8, 4)))]
  elif any(_stride(idx, k.rngs[n]) == 1 for idx in operands):  # vector loads along n
    # 8 stays a choice on AVX-512 (half a register): 120 = 15 × 8 would otherwise take 4-wide vectors
    vector = _divisor(k.full_shape[n], tuple(w for w in (16, 8, 4) if w <= 2 * lanes))
    # 12 rows where 8 do not divide (CleanRL's 84), else 9 or 3 (C51's 3 × 51 = 153 outputs in dL/dW): accumulators
    # of one vector each leave registers free
    one_vector = vector is not None and vector <= lanes
    tiles = [(n, vector)]
    if m is not None: tiles.append((m, _divisor(k.full_shape[m], (8, 12, 9, 4, 3, 2) if one_vector else (8, 4, 3, 2))))
  elif all(_stride(idx, reduced) == 1 for idx in operands) and m is not None:  # NT: transposed in registers; the
    # vector runs along n if 8 divide it, else along m (its strided stores happen once per tile, not per step)
    vector = n if k.full_shape[n] % 8 == 0 or k.full_shape[m] % 8 != 0 else m
    other = m if vector == n else n
    tiles = [(vector, _divisor(k.full_shape[vector], (8, 4))), (other, _divisor(k.full_shape[other], (8, 4, 2)))]
  elif len(operands) == 1 and _stride(operands[0], reduced) == 1:  # row sums (a gradient's squared norm per row):
    # 8 rows at a time, so 8 sums run side by side instead of one chain of dependent adds
    tiles = [(n, _divisor(k.full_shape[n], (8, 4)))]
  else: return None
  if tiles[0][1] is None: return None  # no vector fits the output
  tiles = [(axis, tile) for axis, tile in tiles if tile is not None]
  try:
    tiled = _upcast(k, tiles)
    if k.full_shape[k.unrollable_dims[0]] % 4 == 0: tiled.apply_opt(Opt(OptOps.UNROLL, 0, 4))
  except KernelOptError: return None
  return tiled


def _upcast(k, tiles: list[tuple[int, int]]):
  """A copy of kernel `k` with each (axis, size) of `tiles` upcast in turn, the first innermost (the one clang
  vectorises). Raises tinygrad's KernelOptError where one does not apply."""
  from tinygrad.codegen.opt import Opt, OptOps
  tiled, tiles = k.copy(), list(tiles)
  for i, (axis, tile) in enumerate(tiles):
    whole = tiled.full_shape[axis] == tile  # an axis the tile covers whole leaves the list: later ones shift
    tiled.apply_opt(Opt(OptOps.UPCAST, axis, tile))
    if whole: tiles[i + 1:] = [(a - (a > axis), t) for a, t in tiles[i + 1:]]
  return tiled


def _divisor(size: int, choices: tuple[int, ...]) -> int | None:
  """The first of `choices` that divides `size`."""
  return next((c for c in choices if size % c == 0), None)


def _elementwise_tile(k, lanes: int):
  """One vector per iteration along the output's unit-stride axis for kernels without a reduction (stock: 4 lanes),
  or None."""
  from tinygrad.codegen.opt import KernelOptError
  from tinygrad.dtype import dtypes
  from tinygrad.uop.ops import Ops
  if any(u.op is Ops.REDUCE for u in k.ast.backward_slice): return None
  stores = [u.src[0] for u in k.ast.backward_slice if u.op is Ops.STORE]
  if len(stores) != 1 or stores[0].src[0].dtype != dtypes.float32: return None
  unit = [a for a in k.upcastable_dims if _stride(stores[0].src[1].get_idx(), k.rngs[a]) == 1 and k.full_shape[a] % lanes == 0]
  if not unit: return None
  # a transpose (an input moving in unit steps along another axis): 4 rows of it at a time, read as vectors and
  # regrouped in registers (a 256 × 256 transpose: ~90 µs with strided scalar loads, 25-35 with 4 rows; 8 or 16
  # rows measured slower)
  loads = [b.src[1].get_idx() for b in k.bufs if b not in stores]
  across = [a for a in k.upcastable_dims if a != unit[0] and k.full_shape[a] % 4 == 0
            and any(_stride(idx, k.rngs[a]) == 1 for idx in loads)]
  try: return _upcast(k, [(unit[0], lanes)] + ([(across[0], 4)] if across else []))
  except KernelOptError: return None


_installed: bool | None = None


def install() -> bool:
  """Patches tinygrad's code generation for the CPU device as described above (once per process; later calls
  return the first answer). Returns False, with one warning, when tinygrad is not the pinned release."""
  global _installed
  if _installed is not None: return _installed
  import warnings

  from importlib.metadata import version
  if (found := version("tinygrad")) != TINYGRAD_VERSION:
    warnings.warn(f"tinydqn's wide CPU kernels are written for tinygrad {TINYGRAD_VERSION}, not {found}; "
                  "using tinygrad's stock kernels", stacklevel=2)
    _installed = False
    return False
  import re

  import tinygrad.codegen as codegen
  import tinygrad.codegen.opt.heuristic as heuristic
  from tinygrad.renderer.cstyle import ClangRenderer
  lanes = vector_lanes()
  stock_coalescing, stock_heuristic = codegen.memory_coalescing, heuristic.hand_coded_optimizations
  stock_prefix = ClangRenderer.render_vector_prefix

  def on_cpu(ren) -> bool: return isinstance(ren, ClangRenderer) and ren.target.device == "CPU"

  def coalescing(sink, ren):
    return _wide_coalescing(sink, ren, lanes) if on_cpu(ren) else stock_coalescing(sink, ren)

  def optimizations(k):
    return (on_cpu(k.ren) and (_reduce_tile(k, lanes) or _elementwise_tile(k, lanes))) or stock_heuristic(k)

  def vector_prefix(self, dt, count: int) -> str:
    return re.sub(r"aligned\((\d+)\)", lambda m: f"aligned({min(int(m.group(1)), 16)})", stock_prefix(self, dt, count))

  codegen.memory_coalescing, heuristic.hand_coded_optimizations = coalescing, optimizations
  ClangRenderer.render_vector_prefix = vector_prefix
  # tinygrad compiles in spawned worker processes, which import tinygrad afresh: have each install this too
  import tinygrad.engine.worker as worker
  global _stock_worker_init
  _stock_worker_init, worker._init_worker = worker._init_worker, _init_compile_worker
  worker.terminate_worker_pool()  # a pool started before now would compile stock kernels
  _installed = True
  return True


_stock_worker_init = None


def _init_compile_worker() -> None:
  install()
  _stock_worker_init()
