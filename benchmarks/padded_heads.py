"""µs per gradient step with and without `weight_layout.output_padding`, for heads whose output count the CPU's
vector tile does not divide (C51's actions × 51 atoms, QR-DQN's actions × 50 quantiles, CleanRL's 84-unit layer).

Each (shape, padding) pair runs in its own process, alternating, `--repeats` times; the table gives the median of
the processes' medians. A process times the jitted step as training runs it (wide kernels, HCQ2, 4 steps per call,
waited for), minibatch sampling excluded.

    DEV=CPU .venv/bin/python benchmarks/padded_heads.py
"""
from __future__ import annotations

import kernel_table  # its seeded agent and random memory, and its timing of fused calls

SHAPES = {  # name: (observation size, actions, config fields)
  "Acrobot plain DQN [256,256] B128": (6, 3, dict(net_arch=(256, 256), batch_size=128)),
  "Acrobot C51 (3 × 51 = 153 outputs)": (6, 3, dict(net_arch=(256, 256), batch_size=128, distributional=True,
                                                   v_min=-100.0, v_max=0.0)),
  "Acrobot QR-DQN (3 × 50 = 150 outputs)": (6, 3, dict(net_arch=(256, 256), batch_size=128, quantiles=50)),
  "CartPole C51 (2 × 51 = 102 outputs)": (4, 2, dict(net_arch=(256, 256), batch_size=128, distributional=True)),
  "CleanRL [120,84] B128 (84 outputs)": (4, 2, dict(net_arch=(120, 84), batch_size=128)),
}
PER_CALL = 4


def child(shape: str, padded: bool) -> None:
  from tinydqn.fast import use_fast_kernels
  use_fast_kernels()  # HCQ2, read when tinygrad is first imported
  from tinydqn import networks
  if not padded: networks.output_padding = lambda out_features, device: 0
  obs, actions, fields = SHAPES[shape]
  kernel_table.print_fused_step_us(obs, actions, PER_CALL, **fields)


def main() -> None:
  kernel_table.change_table(__doc__, __file__, SHAPES, "--unpadded", child, ("unpadded", "padded"))


if __name__ == "__main__":
  main()
