"""µs per gradient step with the dense layers' written-out backward pass (`networks.stored_product`) against
autograd's, on the CPU with the wide kernels.

Autograd's dL/dx = dL/dy·Wᵀ reads the [in, out] matrix the forward product used across its rows, which the wide
kernels run as a product that transposes in registers; the written-out pass multiplies by W [out, in] (for weights
stored [in, out], a transposed copy made each step) and returns dL/dW in the stored layout. Each (shape, backward)
pair runs in its own process, alternating, `--repeats` times; the table gives the median of the processes' medians
(the jitted step as training runs it: HCQ2, 4 steps per call, waited for, minibatch sampling excluded).

    DEV=CPU .venv/bin/python benchmarks/dense_backward.py
"""
from __future__ import annotations

import kernel_table  # its seeded agent and random memory, and its timing of fused calls
from padded_heads import PER_CALL

SHAPES = {  # name: (observation size, actions, config fields)
  "CartPole preset [64,64] B128, Double DQN": (4, 2, dict(net_arch=(64, 64), batch_size=128, double_q=True)),
  "CartPole zoo [256,256] B64": (4, 2, dict(net_arch=(256, 256), batch_size=64)),
  "Acrobot preset without C51 [256,256] B128": (6, 3, dict(net_arch=(256, 256), batch_size=128)),
  "Acrobot preset, C51 (3 × 51 outputs, padded to 160)": (6, 3, dict(net_arch=(256, 256), batch_size=128,
                                                                   distributional=True, v_min=-100.0, v_max=0.0)),
}


def child(shape: str, written_out: bool) -> None:
  from tinydqn.fast import use_fast_kernels
  use_fast_kernels()  # HCQ2, read when tinygrad is first imported
  from tinydqn import networks
  if not written_out: networks.stored_product = networks.stored_forward  # autograd differentiates it
  obs, actions, fields = SHAPES[shape]
  kernel_table.print_fused_step_us(obs, actions, PER_CALL, **fields)


def main() -> None:
  kernel_table.change_table(__doc__, __file__, SHAPES, "--autograd", child, ("autograd's backward", "written out"))


if __name__ == "__main__":
  main()
