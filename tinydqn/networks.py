"""Q-networks: an MLP over flat observations, with an optional dueling head."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tinygrad import Tensor, dtypes, nn
from tinygrad.dtype import _to_np_dtype
from tinygrad.nn.state import get_parameters


class QNetwork:
  """MLP Q(φ, ·): hidden ReLU layers from `net_arch`, then one output per action.

  With `dueling`, the last hidden layer feeds a value stream V and an advantage stream A, combined as
  Q = V + A − mean(A) (Wang et al. 2016). Initialisation is tinygrad's (and PyTorch's) uniform ±1/√fan_in.
  """

  def __init__(self, obs_dim: int, n_actions: int, net_arch: Sequence[int], dueling: bool = False):
    sizes = [obs_dim, *net_arch]
    self.hidden = [nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]
    self.advantage = nn.Linear(sizes[-1], n_actions)
    self.value = nn.Linear(sizes[-1], 1) if dueling else None

  def __call__(self, obs: Tensor) -> Tensor:
    x = obs.cast(dtypes.float32).flatten(1)
    for layer in self.hidden: x = layer(x).relu()
    if self.value is None: return self.advantage(x)
    adv = self.advantage(x)
    return self.value(x) + adv - adv.mean(axis=1, keepdim=True)

  def parameters(self) -> list[Tensor]:
    return get_parameters(self)


class NumpyQ:
  """The same forward pass in numpy, reading the network's weights through zero-copy views of its CPU buffers.

  The views follow every in-place update (optimizer steps, target syncs, checkpoint loads), so acting
  costs a few microseconds instead of a jitted tinygrad call. CPU only: other devices have no such views.
  """

  def __init__(self, net: QNetwork):
    def views(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
      return cpu_view(layer.weight).T, cpu_view(layer.bias)
    self.hidden = [views(layer) for layer in net.hidden]
    self.advantage = views(net.advantage)
    self.value = views(net.value) if net.value is not None else None

  def __call__(self, obs: np.ndarray) -> np.ndarray:
    x = obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False)
    for w, b in self.hidden: x = np.maximum(x @ w + b, 0.0)
    adv = x @ self.advantage[0] + self.advantage[1]
    if self.value is None: return adv
    return x @ self.value[0] + self.value[1] + adv - adv.mean(axis=1, keepdims=True)


def cpu_view(t: Tensor) -> np.ndarray:
  """A numpy array sharing memory with a realized tensor on the CPU device (writes go both ways)."""
  buf = t.realize().uop.buffer
  return np.frombuffer(buf.as_memoryview(force_zero_copy=True), dtype=_to_np_dtype(buf.dtype)).reshape(t.shape)


def has_cpu_views(device: str) -> bool:
  """Whether tensors on `device` live in host memory that numpy can share."""
  return device.split(":")[0] == "CPU"
