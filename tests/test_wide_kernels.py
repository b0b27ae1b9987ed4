"""tinydqn.wide_kernels: wider vectors and matmul tiles on the CPU must compute what tinygrad computes, use the wide
vectors they exist for, and leave tinygrad stock on another release."""
import os
import subprocess
import sys

import numpy as np
import pytest
from tinygrad import Device, Tensor

from tinydqn import wide_kernels

pytestmark = pytest.mark.skipif(Device.DEFAULT != "CPU", reason="the wide kernels are the CPU device's")


def test_lanes_follow_the_cpu_flags():
  assert wide_kernels.lanes_for("x86_64", ["sse4_2", "avx", "avx2", "avx512f"]) == 16
  assert wide_kernels.lanes_for("x86_64", ["sse4_2", "avx", "avx2"]) == 8
  assert wide_kernels.lanes_for("x86_64", ["sse4_2"]) == 4
  assert wide_kernels.lanes_for("aarch64", ["avx512f"]) == 4


# NN, NT (x·Wᵀ as nn.Linear computes it) and TN products, with fused bias and ReLU, including sizes no tile divides
@pytest.mark.parametrize("m, k, n", [(64, 256, 256), (128, 120, 84), (84, 128, 120), (32, 4, 256), (7, 5, 3), (64, 256, 2)])
def test_products_match_numpy(m, k, n):
  assert wide_kernels.install()
  rng = np.random.default_rng(m * k * n)
  a, b, w, bias = (rng.standard_normal(s, dtype=np.float32) for s in ((m, k), (k, n), (n, k), (n,)))
  ta, tb, tw, tbias = (Tensor(x) for x in (a, b, w, bias))
  cases = {
    "NN": ((ta @ tb), a @ b),
    "NT + bias + ReLU": ((ta @ tw.T + tbias).relu(), np.maximum(a @ w.T + bias, 0)),
    "matrix-vector (a batch of one) + bias + ReLU": ((ta[:1] @ tw.T + tbias).relu(), np.maximum(a[:1] @ w.T + bias, 0)),
    "row-wise dot products": ((ta * ta[::-1]).sum(axis=1), (a * a[::-1]).sum(axis=1)),
    "TN": ((ta.T @ ta), a.T @ a),
    "column sums": (ta.sum(axis=0), a.sum(axis=0)),
    "row sums": (ta.sum(axis=1), a.sum(axis=1)),
    "row sums of squares (a gradient's norm)": ((ta * ta).sum(axis=1), (a * a).sum(axis=1)),
    "elementwise": ((ta * 2 + 1).relu(), np.maximum(a * 2 + 1, 0)),
    "transpose": (ta.T.contiguous(), a.T),
    "transpose with zero columns": (ta.T.pad((None, (0, 3))).contiguous(), np.pad(a.T, ((0, 0), (0, 3)))),
  }
  for name, (got, want) in cases.items():
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4 * np.sqrt(k), err_msg=name)


KERNEL_SOURCE = """
import numpy as np
from tinygrad import Tensor
from tinydqn import wide_kernels
wide_kernels.install()
a, w = (Tensor(np.ones(s, dtype=np.float32)) for s in ((64, 256), (256, 256)))
(a @ w).realize()
(a @ w.T).realize()
(a[:1] @ w.T).realize()  # acting on one observation
"""


def test_matmul_kernels_use_the_cpus_vector_width():
  lanes = wide_kernels.vector_lanes()
  if lanes <= 4: pytest.skip("this CPU has no vectors wider than tinygrad's stock 4 lanes")
  env = {**os.environ, "DEBUG": "4", "DEV": "CPU", "PARALLEL": "0"}
  out = subprocess.run([sys.executable, "-c", KERNEL_SOURCE], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  # vector loads as wide as the CPU's registers, and a tile of accumulators in all three products
  printed = out.stdout + out.stderr
  assert f"ext_vector_type({lanes})" in printed
  assert printed.count("opts: (Opt(op=OptOps.UPCAST") >= 3


OTHER_RELEASE = """
import importlib.metadata, warnings
importlib.metadata.version = lambda name: "0.15.0"
from tinydqn import wide_kernels
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  print(wide_kernels.install(), wide_kernels.install())
print(len(caught), str(caught[0].message))
import tinygrad.codegen.opt.heuristic as heuristic
print(heuristic.hand_coded_optimizations.__module__)
"""


def test_another_tinygrad_release_keeps_the_stock_kernels_with_one_warning():
  out = subprocess.run([sys.executable, "-c", OTHER_RELEASE], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[0] == "False False"
  assert lines[1].startswith("1 ") and "0.15.0" in lines[1]
  assert lines[2] == "tinygrad.codegen.opt.heuristic"


ONE_STEP = """
import sys, numpy as np
from tinygrad import Tensor
from tinydqn.agent import DQNAgent
from tinydqn.config import Config
Tensor.manual_seed(0)
agent = DQNAgent(Config(net_arch=(64, 64), batch_size=32, double_q=True), (4,), np.dtype(np.float32), 2)
rng = np.random.default_rng(0)
for _ in range(3):
  for column in vars(agent.batch).values():
    column[...] = rng.random(column.shape) * 2 - 1 if column.dtype.kind == "f" else rng.integers(2, size=column.shape)
  agent.update()
np.savez(sys.argv[1], **{k: v.numpy() for k, v in agent.state_dict().items()})
"""


def test_a_gradient_step_with_wide_kernels_equals_the_stock_step_within_rounding(tmp_path):
  states = {}
  for wide in ("0", "1"):
    path = tmp_path / f"wide{wide}.npz"
    env = {**os.environ, "TINYDQN_WIDE": wide, "DEV": "CPU"}
    out = subprocess.run([sys.executable, "-c", ONE_STEP, str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    states[wide] = dict(np.load(path))
  assert states["0"].keys() == states["1"].keys()
  for name in states["0"]: np.testing.assert_allclose(states["1"][name], states["0"][name], rtol=1e-4, atol=1e-5, err_msg=name)
  assert any(not np.array_equal(states["0"][k], states["1"][k]) for k in states["0"]), "the wide kernels did not run"
