"""Which tinygrad device runs the networks, and the one way numpy memory is handed to it.

The device is the CPU unless the caller names one or tinygrad's `DEV` variable does. tinygrad's own choice
(`Device.DEFAULT` without `DEV`) takes the first runtime it finds among METAL, AMD, NV, CUDA, QCOM, CL before the
CPU, so merely installing an OpenCL driver would move every run elsewhere; tinydqn never asks for it.

Staging contract: `Tensor(numpy_array)` wraps the array without copying, and tinygrad reads it when the copy to
the device runs. Backends differ in when that is (tinygrad 0.14): CPU, CUDA, NV, AMD, METAL and WEBGPU read the
host memory while the tensor is realized; CL enqueues a non-blocking write and reads it when its queue gets there,
possibly after Python has moved on. Every array tinydqn hands to tinygrad therefore goes through `to_device`, which
hands over a private copy: what tinygrad reads can never be rewritten by the sampler, whatever the backend does.
docs/devices.md has the details per backend.
"""
from __future__ import annotations

import numpy as np
from tinygrad import Device, Tensor
from tinygrad.helpers import DEV

from tinydqn.errors import UserError


def resolve_device(device: str | None = None) -> str:
  """The device to run on, canonical ('cpu' -> 'CPU'): `device`, else tinygrad's DEV (environment or Context),
  else the CPU. Never touches `Device.DEFAULT`, which would pick (and export to child processes) any runtime found."""
  return Device.canonicalize(device or DEV.device or "CPU")


def default_device(device: str) -> dict[str, str]:
  """Context arguments that make `device` the default for tensors made without one (`Context(**default_device(d))`);
  none when DEV already names it, so a renderer chosen there (DEV=CPU:LLVM) is kept."""
  return {} if DEV.device and Device.canonicalize(DEV.device) == device else {"DEV": device}


def check_device(device: str | None = None) -> str:
  """`resolve_device`, then a 2-element computation on it read back and checked: a device that cannot open,
  compile or compute correctly (a WEBGPU without its Vulkan driver returns garbage silently) is a UserError
  with one line, before anything is written."""
  name = Device.canonicalize(device or DEV.device or "CPU")  # a string operation: opens nothing
  try:
    resolved = resolve_device(device)
    got = (Tensor([1.0, 2.0], device=resolved) * 2).tolist()
  except Exception as e:
    first = next((line for line in str(e).strip().splitlines() if line.strip()), type(e).__name__)
    raise UserError(f"device {name!r} is not usable here: {first}") from None
  if got != [2.0, 4.0]: raise UserError(f"device {resolved} computed [1, 2] * 2 = {got}: its driver is not working")
  return resolved


def to_device(array: np.ndarray, device: str) -> Tensor:
  """A tensor on `device` holding `array`'s values as they are now: tinygrad gets a private copy, so the caller
  may rewrite `array` at once, even where the backend copies to the device later. Realize it (or assign it and
  realize) as usual."""
  return Tensor(np.array(array, copy=True, order="C"), device=device)
