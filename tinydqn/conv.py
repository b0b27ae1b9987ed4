"""Convolutional torsos for pixel observations: the Nature DQN's CNN (Atari) and MinAtar's small CNN."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tinygrad import Tensor, dtypes, nn

from tinydqn.dense import Noise, apply_dense, cpu_view, dense, dense_views, numpy_dense
from tinydqn.errors import UserError
from tinydqn.fast import wide_kernels_wanted

def _out(size: int, kernel: int, stride: int) -> int: return (size - kernel) // stride + 1


def convs_as_products(device: str) -> bool:
  """Whether convolutions on `device` run as matrix products over explicit patches (`conv_relu`): on the CPU with
  tinydqn's wide kernels (not with `TINYDQN_WIDE=0`), whose matmul tiles those products get (BENCHMARKS.md, "Nature
  CNN step"). Other devices keep tinygrad's convolution."""
  return wide_kernels_wanted(device)


def conv_relu(x: Tensor, conv: nn.Conv2d, as_product: bool) -> Tensor:
  """ReLU(conv(x)) for channels-first `x` (no padding), with `as_product` as a matrix product of the patches (each
  output pixel's window as a row, im2col) by the weights. tinygrad's convolution is one kernel with three reduction
  axes, which the wide kernels' matmul rule does not tile, and its input gradient sums 5 × 5 masked copies of each
  window where 2 × 2 overlap (for the Nature CNN's second layer: half of the whole step). The patches, the gradient
  of the pre-ReLU product and the per-group weight gradients get buffers of their own (`contiguous_backward`), so
  the product, both of its gradients and the ReLU mask are each a kernel of plain shape; the weights are copied
  [in, out] first, so the product is x·W rather than x·Wᵀ (`tinydqn.weight_layout` says why). Returns a
  channels-first view of a channels-last buffer; the same numbers as `conv(x).relu()` within float rounding."""
  if not as_product: return conv(x).relu()
  (b, c), (out_channels, _, kh, kw) = x.shape[:2], conv.weight.shape
  stride_h, stride_w = (conv.stride, conv.stride) if isinstance(conv.stride, int) else conv.stride
  windows = _windows(x, kh, kw, stride_h, stride_w)  # [B, C, OH, OW, kh, kw]
  oh, ow = windows.shape[2:4]
  groups, size = _row_groups(b * oh * ow), c * kh * kw
  patches = windows.permute(0, 2, 3, 1, 4, 5).reshape(groups, -1, size).contiguous().contiguous_backward()
  weight = conv.weight.reshape(out_channels, size).T.contiguous()  # [in, out]: a small copy per step
  weight = weight.reshape(1, size, out_channels).expand(groups, size, out_channels).contiguous_backward()
  pre = (patches @ weight + conv.bias).contiguous_backward()
  return pre.relu().contiguous().reshape(b, oh, ow, out_channels).permute(0, 3, 1, 2)  # stored channels-last


def _windows(x: Tensor, kh: int, kw: int, stride_h: int, stride_w: int) -> Tensor:
  """`x.unfold(2, kh, stride_h).unfold(3, kw, stride_w)`: every kh × kw window of `x` [B, C, H, W] as [B, C, OH, OW,
  kh, kw]. Where the strides divide the kernel and the image, the windows are taken from stride-sized blocks instead
  (the image as [B, C, H/s, s, W/s, s], windows of kh/s × kw/s blocks one block apart): the same values, but the
  gradient, which sums each pixel's copies, then adds (kh/s)·(kw/s) masked terms (4 for the Nature CNN's 4 × 4
  stride 2) where tinygrad's strided unfold adds 25, with index arithmetic that ran at 3 GFLOP/s (BENCHMARKS.md,
  "Nature CNN step")."""
  b, c, h, w = x.shape
  if (stride_h, stride_w) == (1, 1) or kh % stride_h or kw % stride_w or h % stride_h or w % stride_w:
    return x.unfold(2, kh, stride_h).unfold(3, kw, stride_w)
  blocks = x.reshape(b, c, h // stride_h, stride_h, w // stride_w, stride_w)
  blocks = blocks.unfold(2, kh // stride_h, 1).unfold(4, kw // stride_w, 1)  # [B, C, OH, s, OW, s, kh/s, kw/s]
  return blocks.permute(0, 1, 2, 4, 6, 3, 7, 5).reshape(b, c, blocks.shape[2], blocks.shape[4], kh, kw)


def _row_groups(rows: int, most: int = 512) -> int:
  """How many groups of patch rows the weights' gradient is summed in: the largest group of at most `most` rows
  that is a whole number of 8-row tiles and divides `rows` (1 group where none does). Summed over all rows in one
  go, each of its register tiles walks the whole patch matrix, out of cache; in groups, each partial sum stays in
  cache and one small kernel adds the partial sums."""
  size = next((n for n in range(min(most, rows) // 8 * 8, 0, -8) if rows % n == 0), rows)
  return rows // size


def _features(x: Tensor, as_product: bool) -> Tensor:
  """The features of `conv_relu`'s output in channels-first order, [B, C·H·W]; a product's channels-last result is
  copied first (small), so the dense layer multiplies a plain matrix and its input gradient is a plain product."""
  return (x.contiguous().contiguous_backward() if as_product else x).flatten(1)


class NatureCNN:
  """Mnih et al. 2015: conv 32×8×8 stride 4, conv 64×4×4 stride 2, conv 64×3×3 stride 1, dense 512, all ReLU,
  over a channels-first stack of frames (4×84×84). uint8 frames are scaled to [0, 1] here, so the replay
  memory and the jit inputs stay uint8 (4× less to store and to copy)."""

  def __init__(self, obs_shape: tuple[int, ...], sigma0: float = 0.0):
    c, h, w = obs_shape
    self.convs = [nn.Conv2d(c, 32, 8, stride=4), nn.Conv2d(32, 64, 4, stride=2), nn.Conv2d(64, 64, 3, stride=1)]
    for k, s in ((8, 4), (4, 2), (3, 1)): h, w = _out(h, k, s), _out(w, k, s)
    if h < 1 or w < 1: raise UserError(f"nature_cnn needs frames of at least 36×36, got {obs_shape}")
    self.hidden = dense(64 * h * w, 512, sigma0)
    self.features = 512

  def __call__(self, obs: Tensor, noise: Noise | None) -> Tensor:
    x = obs.cast(dtypes.float32) / 255.0 if obs.dtype == dtypes.uint8 else obs.cast(dtypes.float32)
    as_product = convs_as_products(x.device)
    for conv in self.convs: x = conv_relu(x, conv, as_product)
    return apply_dense(self.hidden, _features(x, as_product), noise).relu()


class MinAtarCNN:
  """Young & Tian 2019: one conv 16×3×3 stride 1 and a dense layer of 128, ReLU, over MinAtar's channels-last
  10×10×k boolean frames (transposed here to channels first)."""

  def __init__(self, obs_shape: tuple[int, ...], sigma0: float = 0.0):
    h, w, c = obs_shape
    self.conv = nn.Conv2d(c, 16, 3, stride=1)
    self.hidden = dense(16 * _out(h, 3, 1) * _out(w, 3, 1), 128, sigma0)
    self.features = 128

  def __call__(self, obs: Tensor, noise: Noise | None) -> Tensor:
    as_product = convs_as_products(obs.device)
    x = conv_relu(obs.cast(dtypes.float32).permute(0, 3, 1, 2), self.conv, as_product)
    return apply_dense(self.hidden, _features(x, as_product), noise).relu()

  def numpy_forward(self) -> Callable[[np.ndarray, Iterator | None], np.ndarray]:
    """The same computation in numpy on zero-copy weight views, so acting needs no tinygrad call (costs in
    BENCHMARKS.md, "Small costs the code relies on"). CPU device only."""
    weight, bias, hidden = cpu_view(self.conv.weight), cpu_view(self.conv.bias), dense_views(self.hidden)
    def forward(obs: np.ndarray, noise: Iterator | None) -> np.ndarray:
      windows = sliding_window_view(obs.astype(np.float32), weight.shape[2:], axis=(1, 2))  # [B, h, w, c, 3, 3]
      x = np.tensordot(windows, weight, axes=([3, 4, 5], [1, 2, 3])) + bias  # [B, h, w, 16]
      x = np.maximum(x, 0.0).transpose(0, 3, 1, 2).reshape(len(obs), -1)  # flattened channels first, as above
      return np.maximum(numpy_dense(hidden, x, noise), 0.0)
    return forward


def network_for(name: str, obs_shape: tuple[int, ...]) -> str:
  """The torso `name` means for these observations: 'auto' picks nature_cnn for k×84×84 frame stacks,
  minatar_cnn for 10×10×k frames, and an MLP for anything else."""
  if name != "auto":
    if name != "mlp" and len(obs_shape) != 3:
      raise UserError(f"network {name!r} needs image observations (3 dimensions), got shape {obs_shape}")
    return name
  if len(obs_shape) == 3 and obs_shape[1:] == (84, 84): return "nature_cnn"
  if len(obs_shape) == 3 and obs_shape[:2] == (10, 10): return "minatar_cnn"
  return "mlp"


def build_conv_torso(name: str, obs_shape: tuple[int, ...], sigma0: float = 0.0) -> NatureCNN | MinAtarCNN:
  return (NatureCNN if name == "nature_cnn" else MinAtarCNN)(obs_shape, sigma0)
