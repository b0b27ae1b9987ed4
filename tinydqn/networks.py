"""Q-networks: a torso (MLP here; convolutional ones for pixels in conv.py) and a head (heads.py), both built from
the dense layers of dense.py. Imports run one way: dense <- conv, heads <- networks.

Noise never lives inside the network: callers pass it in, so jitted graphs read it from input buffers and numpy's
seeded generator draws it (deterministic and resumable like everything else).
"""
from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
from tinygrad import Tensor, dtypes
from tinygrad.nn.state import get_parameters

from tinydqn.conv import build_conv_torso, network_for
from tinydqn.dense import Linear, Noise, NoisyLinear, apply_dense, dense, dense_views, numpy_dense
from tinydqn.fast import wide_kernels_wanted
from tinydqn.heads import Head


class Torso(Protocol):
  """Turns a batch of observations into `features` values each. Dense layers in it may be noisy; they must be
  attributes defined in the order the forward pass runs them (that order hands out the noise)."""
  features: int
  def __call__(self, obs: Tensor, noise: Noise | None) -> Tensor: ...


class MLPTorso:
  """Hidden ReLU layers from `net_arch` over the flattened observation."""

  def __init__(self, obs_dim: int, net_arch: Sequence[int], sigma0: float = 0.0):
    sizes = [obs_dim, *net_arch]
    self.hidden = [dense(i, o, sigma0) for i, o in zip(sizes[:-1], sizes[1:])]
    self.features = sizes[-1]

  def __call__(self, obs: Tensor, noise: Noise | None) -> Tensor:
    x = obs.cast(dtypes.float32).flatten(1)
    # On the CPU each activation gets a buffer: fused into the next product, the ReLU ran once per tile of that
    # product on scalars and halved its speed (BENCHMARKS.md, "Weights stored [in, out]")
    materialize = wide_kernels_wanted(x.device)
    for layer in self.hidden:
      x = apply_dense(layer, x, noise).relu()
      if materialize: x = x.contiguous()
    return x

  def numpy_forward(self) -> Callable[[np.ndarray, Iterator | None], np.ndarray]:
    """The same computation in numpy on zero-copy views of the weights (CPU device only)."""
    hidden = [dense_views(layer) for layer in self.hidden]
    def forward(obs: np.ndarray, noise: Iterator | None) -> np.ndarray:
      x = obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False)
      for layer in hidden: x = np.maximum(numpy_dense(layer, x, noise), 0.0)
      return x
    return forward


def build_torso(config, obs_shape: tuple[int, ...]) -> Torso:
  """The torso `config` asks for, for observations of `obs_shape` (config.network; 'auto' picks by shape)."""
  kind = network_for(config.network, tuple(obs_shape))
  if kind != "mlp": return build_conv_torso(kind, tuple(obs_shape), noisy_sigma0(config))
  return MLPTorso(int(np.prod(obs_shape)), config.net_arch, noisy_sigma0(config))


def noisy_sigma0(config) -> float:
  """σ₀ for the dense layers `config` asks for: 0 (plain layers) unless noisy nets are on."""
  return config.noisy_sigma0 if config.noisy else 0.0


class QNetwork:
  """Q(φ, ·) from a torso and a head (`tinydqn.heads`): the torso turns observations into features, the head
  turns them into its output (Q-values, or a return distribution per action) and knows how to reduce that to
  Q-values and how to learn it. Initialisation is tinygrad's (and PyTorch's) uniform ±1/√fan_in."""

  def __init__(self, torso: Torso, head: Head):
    self.torso, self.head = torso, head

  def __call__(self, obs: Tensor, noise: Sequence[tuple[Tensor, Tensor]] | None = None) -> Tensor:
    """The head's output for a batch of observations. No noise: noisy layers use their mean weights."""
    it = iter(noise) if noise is not None else None
    return self.head(self.torso(obs, it), it)

  def _asdict(self) -> dict:
    """The named parts tinygrad's get_state_dict reads (it looks for `_asdict` first): the torso, then the head's
    layers under the names checkpoints have always used (advantage, value), so old checkpoints still load."""
    return {"torso": self.torso, **self.head.layers()}

  def noisy_layers(self) -> list[NoisyLinear]:
    """The noisy layers in the order they consume noise (torsos define their layers in forward order)."""
    return list(_find_noisy(self))

  def parameters(self) -> list[Tensor]:
    return get_parameters(self)


def _find_noisy(obj) -> Iterator[NoisyLinear]:
  return (item for item in _walk(obj) if isinstance(item, NoisyLinear))


def _walk(obj) -> Iterator:
  """`obj` and the objects in its attributes and lists, depth first in definition order (tensors not entered)."""
  yield obj
  if isinstance(obj, (list, tuple)):
    for item in obj: yield from _walk(item)
  elif hasattr(obj, "__dict__") and not isinstance(obj, Tensor):
    for item in vars(obj).values(): yield from _walk(item)


def empty_noise(shapes: Sequence[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
  """Zeroed (f(ε_in), f(ε_out)) arrays for noisy layers of these (in, out) shapes, for `factorized_noise` to fill."""
  return [(np.zeros(n_in, np.float32), np.zeros(n_out, np.float32)) for n_in, n_out in shapes]


def factorized_noise(rng: np.random.Generator, shapes: Sequence[tuple[int, int]],
                     out: list[tuple[np.ndarray, np.ndarray]]) -> None:
  """Draws fresh f(ε_in), f(ε_out) for each noisy layer into `out`, in place (f(x) = sign(x)√|x|)."""
  for (n_in, n_out), (f_in, f_out) in zip(shapes, out):
    for arr, n in ((f_in, n_in), (f_out, n_out)):
      eps = rng.standard_normal(n, dtype=np.float32)
      np.multiply(np.sign(eps), np.sqrt(np.abs(eps)), out=arr)


def stored_inputs_first(net) -> list[Tensor]:
  """The weight matrices (μ and σ of noisy layers) of `net`'s dense layers that are stored [in, out]."""
  layers = [obj for obj in _walk(net) if isinstance(obj, Linear) and obj.inputs_first]
  return [t for layer in layers for t in (layer.weight, getattr(layer, "weight_sigma", None)) if t is not None]


class NumpyQ:
  """The same forward pass in numpy, reading the network's weights through zero-copy views of its CPU buffers.

  The views follow every in-place update (optimizer steps, target syncs, checkpoint loads), so acting
  costs microseconds instead of a jitted tinygrad call. CPU only: other devices have no such views. Torsos
  that can be mirrored have a `numpy_forward()` (the MLP, MinAtar's small CNN); see `has_numpy_forward`.
  """

  def __init__(self, net: QNetwork):
    self.torso, self.head, self.reduce = net.torso.numpy_forward(), net.head.numpy_forward(), net.head.numpy_q_values

  def __call__(self, obs: np.ndarray, noise: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Q-values [batch, actions] (expected returns with a distributional head)."""
    it = iter(noise) if noise is not None else None
    return self.reduce(self.head(self.torso(obs, it), it))


def has_numpy_forward(net: QNetwork) -> bool:
  """Whether both the torso and the head can run in numpy (the Nature CNN cannot: tinygrad acts for it)."""
  return hasattr(net.torso, "numpy_forward") and getattr(net.head, "numpy_forward", None) is not None
