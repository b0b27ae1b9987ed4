"""Which dense layers keep their weight matrix [in, out] instead of tinygrad's (and PyTorch's) [out, in], and the
conversion that keeps saved state in one layout, [out, in], whatever an agent holds.

A dense layer's forward product x·W vectorises along its outputs. Stored [out, in], W's outputs are its rows, so
tinygrad's kernel for x·Wᵀ loads both operands along the reduction and transposes in registers: on the CPU with the
wide kernels it ran at a third of the speed of the x·W product with W stored [in, out] (BENCHMARKS.md, "Weights
stored [in, out]"). Stored [in, out], the backward product dL/dx = dL/dy·Wᵀ is the transposed one instead, but a
gradient step multiplies by W two or three times forward (online and target nets, the online net again at s' with
Double DQN) and once backward. An output count the vector tile does not divide (CleanRL's 84, an output layer of
2) gains nothing, so those layers keep [out, in], as do matrices over `MOST_WEIGHTS` floats.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tinydqn.fast import wide_kernels_wanted

VECTOR_TILE = 8  # floats: the narrowest of the wide kernels' vector tiles along a product's outputs
# Larger matrices keep [out, in]: the Nature CNN's 3136 × 512 layer multiplies one observation per action (its
# acting runs in tinygrad), where x·W walked W in 16-float strips across 3136 rows of 2 KiB and took 6.8 ms per
# action against 2.5 ms streaming W's rows as x·Wᵀ; in the batch-32 gradient step either layout measured the same.
MOST_WEIGHTS = 1 << 20


def inputs_first(in_features: int, out_features: int, device: str) -> bool:
  """Whether a dense layer of this shape on `device` stores its weights [in, out]: on the CPU with the wide kernels,
  when the vector tile divides its outputs and the matrix has at most `MOST_WEIGHTS` floats."""
  return out_features % VECTOR_TILE == 0 and in_features * out_features <= MOST_WEIGHTS and wide_kernels_wanted(device)


def output_padding(out_features: int, device: str) -> int:
  """How many zero columns a dense layer's product on `device` appends to W [in, out] so that the vector tile
  divides its outputs (the extra outputs are dropped): on the CPU with the wide kernels, for output counts of at
  least two tiles that it does not divide, e.g. C51's 3 actions × 51 atoms = 153, padded to 160. A product whose
  outputs no vector divides runs on tinygrad's scalar kernels: 3 actions × 51 atoms, batch 128, forward and dL/dW
  took 1,045 µs unpadded and 230 padded, 205 for a layer of 160 outputs (BENCHMARKS.md, "C51 and QR-DQN heads
  padded"). Smaller layers (an output per action) are left alone: the padding would be most of their work."""
  if out_features % VECTOR_TILE == 0 or out_features < 2 * VECTOR_TILE or not wide_kernels_wanted(device): return 0
  return -out_features % VECTOR_TILE


def transpose_stored(arrays: dict[str, np.ndarray], weights: set[str], params: Sequence[bool],
                     shapes: Sequence[tuple[int, ...]]) -> dict[str, np.ndarray]:
  """`arrays` with each of the `weights` keys transposed, and the optimizer's moments of the parameters flagged in
  `params` (in optimizer order; `shapes` their shapes as `arrays` holds them) transposed too: one array per
  parameter (`optimizer.m.3`) or all parameters in one flat buffer (`optimizer.m.0`, fused), whose segments are
  transposed in place. Transposing twice gives `arrays` back, so this converts either way."""
  if not any(params): return arrays
  out = {k: np.ascontiguousarray(v.T) if k in weights else v for k, v in arrays.items()}
  sizes = [int(np.prod(s)) for s in shapes]
  for key, value in arrays.items():
    if not key.startswith("optimizer.") or value.ndim == 0: continue
    stem, _, index = key.rpartition(".")
    if not index.isdigit(): continue
    if index == "0" and f"{stem}.1" not in arrays and value.size == sum(sizes):  # fused
      parts = np.split(value.reshape(-1), np.cumsum(sizes)[:-1])
      out[key] = np.concatenate([p.reshape(s).T.reshape(-1) if flip else p for p, s, flip in zip(parts, shapes, params)])
    elif int(index) < len(params) and params[int(index)]:
      out[key] = np.ascontiguousarray(value.T)
  return out
