"""Convolutional torsos for pixel observations: the Nature DQN's CNN (Atari) and MinAtar's small CNN."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tinygrad import Tensor, dtypes, nn

from tinydqn.errors import UserError
from tinydqn.networks import Noise, apply_dense, cpu_view, dense, dense_views, numpy_dense

def _out(size: int, kernel: int, stride: int) -> int: return (size - kernel) // stride + 1


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
    for conv in self.convs: x = conv(x).relu()
    return apply_dense(self.hidden, x.flatten(1), noise).relu()


class MinAtarCNN:
  """Young & Tian 2019: one conv 16×3×3 stride 1 and a dense layer of 128, ReLU, over MinAtar's channels-last
  10×10×k boolean frames (transposed here to channels first)."""

  def __init__(self, obs_shape: tuple[int, ...], sigma0: float = 0.0):
    h, w, c = obs_shape
    self.conv = nn.Conv2d(c, 16, 3, stride=1)
    self.hidden = dense(16 * _out(h, 3, 1) * _out(w, 3, 1), 128, sigma0)
    self.features = 128

  def __call__(self, obs: Tensor, noise: Noise | None) -> Tensor:
    x = self.conv(obs.cast(dtypes.float32).permute(0, 3, 1, 2)).relu()
    return apply_dense(self.hidden, x.flatten(1), noise).relu()

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
