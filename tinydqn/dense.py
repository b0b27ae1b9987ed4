"""Dense layers, plain or noisy (Rainbow's noisy nets), in tinygrad and in numpy on zero-copy views of their weights.

The torsos (networks.py, conv.py) and the heads (heads.py) are built from these; this module imports none of them.
Noise never lives inside a layer: callers pass it in, so jitted graphs read it from input buffers and numpy's seeded
generator draws it (deterministic and resumable like everything else).
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
from tinygrad import Device, Tensor
from tinygrad.dtype import _to_np_dtype
from tinygrad.function import function
from tinygrad.uop.ops import Ops

from tinydqn.weight_layout import inputs_first, output_padding

Noise = Iterator[tuple[Tensor, Tensor]]  # (f(ε_in), f(ε_out)) per noisy layer, in the order the layers run


class Linear:
  """tinygrad's nn.Linear (the same initial values, drawn in the same order) with its weight stored [out, in] or,
  with `inputs_first`, [in, out] (`tinydqn.weight_layout`: on the CPU, for products that vectorise better so)."""

  def __init__(self, in_features: int, out_features: int, inputs_first: bool = False, padding: int = 0):
    bound = 1.0 / math.sqrt(in_features)
    weight = Tensor.uniform(out_features, in_features, low=-bound, high=bound)
    self.weight = weight.T.contiguous() if inputs_first else weight
    self.bias = Tensor.uniform(out_features, low=-bound, high=bound)
    self.inputs_first, self.padding = inputs_first, padding

  def __call__(self, x: Tensor) -> Tensor: return self._product(x, self.weight) + self.bias

  def _product(self, x: Tensor, weight: Tensor) -> Tensor:
    """x·W with `weight` as stored; through `stored_product` where the layout or the padding is the CPU's."""
    if self.inputs_first or self.padding: return stored_product(x, weight, self.inputs_first, self.padding)
    return x @ weight.T


def stored_product(x: Tensor, weight: Tensor, inputs_first: bool, padding: int = 0) -> Tensor:
  """x·W for `weight` stored [in, out] (`inputs_first`) or [out, in], with a backward pass written out so that each
  of its products reads its operands as the CPU's wide kernels vectorise them (`weight_layout`).

  With `padding`, the forward product runs on a copy of W [in, out + padding] whose extra columns are zeros, and the
  extra outputs are dropped from its stored result (`weight_layout.output_padding`). Backward, dL/dx = dL/dy·W reads
  W [out, in] along its rows: autograd would read the [in, out] matrix the forward used across them, a product that
  transposes in registers (Acrobot's 256 × 256 layer at batch 128: 214-220 µs, against 118-130 µs for this product
  on a transposed copy and 25-35 µs for the copy; BENCHMARKS.md, "Backward passes written out"). dL/dW comes out in W's
  stored layout, with no transposed gradient to copy back."""
  def backward(dy_uop, call):
    x, w = (Tensor(u) for u in call.src[1:])
    dy = Tensor(dy_uop)
    w_out_in = w.T.contiguous() if inputs_first else w
    return (dy @ w_out_in).uop, (x.T @ dy if inputs_first else dy.T @ x).uop

  @function(grad_fxn=backward)
  def product(x: Tensor, w: Tensor) -> Tensor: return stored_forward(x, w, inputs_first, padding)
  return product(x, weight)


def stored_forward(x: Tensor, weight: Tensor, inputs_first: bool, padding: int = 0) -> Tensor:
  """`stored_product`'s forward pass (autograd would differentiate it as tinygrad does)."""
  w_in_out = weight if inputs_first else weight.T
  if not padding: return x @ w_in_out
  return (x @ w_in_out.pad((None, (0, padding))).contiguous()).contiguous()[..., :-padding]


class NoisyLinear(Linear):
  """Factorised Gaussian noisy layer (Fortunato et al. 2018): W = μ_W + σ_W ⊙ f(ε_out)f(ε_in)ᵀ, b = μ_b + σ_b ⊙ f(ε_out),
  with f(x) = sign(x)·√|x|. μ starts uniform ±1/√fan_in and σ at σ₀/√fan_in. Without noise it is its mean layer.
  μ_W and σ_W are stored alike, [out, in] or, with `inputs_first`, [in, out]."""

  def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5, inputs_first: bool = False,
               padding: int = 0):
    super().__init__(in_features, out_features, inputs_first, padding)
    bound = 1.0 / math.sqrt(in_features)
    self.weight_sigma = Tensor.full(self.weight.shape, sigma0 * bound).contiguous()
    self.bias_sigma = Tensor.full((out_features,), sigma0 * bound).contiguous()
    self.shape = (in_features, out_features)

  def __call__(self, x: Tensor, noise: tuple[Tensor, Tensor] | None = None) -> Tensor:
    if noise is None: return super().__call__(x)
    f_in, f_out = noise  # building W costs in·out multiply-adds, far less than a second batch matmul would
    outs, ins = (f_out.unsqueeze(0), f_in.unsqueeze(1)) if self.inputs_first else (f_out.unsqueeze(1), f_in.unsqueeze(0))
    return self._product(x, self.weight + self.weight_sigma * outs * ins) + self.bias + self.bias_sigma * f_out


def dense(in_features: int, out_features: int, sigma0: float = 0.0) -> Linear | NoisyLinear:
  """A NoisyLinear with this σ₀, or a plain linear layer when `sigma0` is 0, stored as `weight_layout` says for
  the device tensors are made on now (the agent builds its networks with its device as tinygrad's default)."""
  layout = inputs_first(in_features, out_features, Device.DEFAULT)
  padding = output_padding(out_features, Device.DEFAULT)
  if sigma0 > 0: return NoisyLinear(in_features, out_features, sigma0, layout, padding)
  return Linear(in_features, out_features, layout, padding)


def apply_dense(layer: Linear | NoisyLinear, x: Tensor, noise: Noise | None) -> Tensor:
  """A dense layer; a noisy one takes the next noise pair (none: its mean weights)."""
  if isinstance(layer, NoisyLinear): return layer(x, next(noise) if noise is not None else None)
  return layer(x)


def dense_views(layer: Linear | NoisyLinear) -> tuple:
  """(W [in, out], b, σ views or None) of a dense layer, as numpy arrays sharing the tensors' CPU memory."""
  def in_out(t: Tensor) -> np.ndarray: return cpu_view(t) if layer.inputs_first else cpu_view(t).T
  sigma = (in_out(layer.weight_sigma), cpu_view(layer.bias_sigma)) if isinstance(layer, NoisyLinear) else None
  return in_out(layer.weight), cpu_view(layer.bias), sigma


def numpy_dense(views: tuple, x: np.ndarray, noise: Iterator | None) -> np.ndarray:
  """`apply_dense` in numpy: a noisy layer takes the next noise pair (none: its mean weights)."""
  w, b, sigma = views
  y = x @ w + b
  if sigma is None or noise is None: return y
  f_in, f_out = next(noise)
  return y + ((x * f_in) @ sigma[0] + sigma[1]) * f_out  # x·(σ_W ⊙ f_out f_inᵀ)ᵀ without the outer product


def cpu_view(t: Tensor) -> np.ndarray:
  """A numpy array sharing memory with a realized tensor on the CPU device (writes go both ways)."""
  u = t.uop
  while u.op is Ops.DETACH: u = u.src[0]  # a jit returns detached outputs as DETACH(BUFFER): still that buffer
  # Tensor.realize on such a tensor walks every live tensor to find nothing to do (BENCHMARKS.md, "The Rainbow step made cheaper")
  buf = u.buffer if u.op is Ops.BUFFER and u.buffer.is_allocated() else t.realize().uop.buffer
  return np.frombuffer(buf.as_memoryview(force_zero_copy=True), dtype=_to_np_dtype(buf.dtype)).reshape(t.shape)


def has_cpu_views(device: str) -> bool:
  """Whether tensors on `device` live in host memory that numpy can share."""
  return device.split(":")[0] == "CPU"
