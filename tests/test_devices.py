"""Any device: the staging contract (tinygrad never gets numpy memory that is rewritten later), the CPU as the
default device, resuming where the snapshot's device is missing, and an end-to-end run on a second backend.

Device-agnostic: CI runs this file on the CPU and again with DEV=CL (POCL)."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import tinygrad.tensor
from tinygrad import Device, Tensor

import tinydqn.snapshot as snapshot
from tinydqn.agent import _flat
from tinydqn.devices import resolve_device
from tinydqn.logger import WALL_CLOCK_COLUMNS

from conftest import filled_buffer, make_agent, params_numpy

DEVICE = resolve_device()  # the suite's device: the CPU unless DEV names another


@pytest.fixture
def handed_to_tinygrad(monkeypatch) -> list[np.ndarray]:
  """Every numpy array tinygrad wraps while the test runs (`Tensor(ndarray)` goes through tinygrad's `_fromnp`)."""
  seen: list[np.ndarray] = []
  original = tinygrad.tensor._fromnp
  def spy(x: np.ndarray):
    seen.append(x)
    return original(x)
  monkeypatch.setattr(tinygrad.tensor, "_fromnp", spy)
  return seen


def shared(seen: list[np.ndarray], arrays: list[np.ndarray]) -> list[tuple[int, int]]:
  return [(i, j) for i, s in enumerate(seen) for j, a in enumerate(arrays) if np.shares_memory(s, a)]


def test_staged_minibatches_and_noise_are_private_copies(small_config, handed_to_tinygrad):
  """Issue 17: `Tensor(array)` wraps without copying and CL copies when its queue gets there, so handing tinygrad the
  sampler's arrays let a fused burst train on minibatches drawn after it. Whatever tinygrad is given must share no
  memory with what the sampler and the noise draws write next (fused calls and the single-step remainder)."""
  agent = make_agent(small_config.replace(noisy=True, gradient_steps=4, train_freq=4), host_views=False)
  memory, rng = filled_buffer(), np.random.default_rng(0)
  handed_to_tinygrad.clear()
  agent.updates(5, lambda batch: memory.sample_into(batch, rng), rng)  # one fused call of 4, then one single step
  rewritten = [a for batch, noise in zip(agent.batches, agent.noises) for a in (*vars(batch).values(), *_flat(noise))]
  assert len(handed_to_tinygrad) >= len(rewritten) * 5 // 4  # 4 staged minibatches and noise draws, then 1
  assert shared(handed_to_tinygrad, rewritten) == []


def test_other_numpy_inputs_are_private_copies(small_config, handed_to_tinygrad):
  """Acting's tinygrad path, checkpoint loading and the RNG restore hand tinygrad copies too: the caller may
  reuse its arrays as soon as the call returns."""
  agent = make_agent(small_config.replace(noisy=True), host_views=False)
  obs = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
  noise = [(np.ones(n_in, np.float32), np.ones(n_out, np.float32)) for n_in, n_out in agent._online_noise_shapes]
  state = {k: v.numpy() for k, v in agent.state_dict().items()}
  Tensor.manual_seed(2)
  Tensor.rand(3, device=DEVICE).realize()
  rng_state = snapshot.tinygrad_rng_state()
  handed_to_tinygrad.clear()
  agent.q_values(obs, noise)
  agent.load_state_dict(state)
  snapshot.restore_tinygrad_rng(rng_state, DEVICE)
  callers = [obs, *_flat(noise), *state.values(), *(a for pair in rng_state["devices"].values() for a in pair)]
  assert len(handed_to_tinygrad) >= len(callers)
  assert shared(handed_to_tinygrad, callers) == []


def test_fused_bursts_on_a_busy_device_train_on_their_own_minibatches(small_config):
  """The contract on the device itself: with the device queue kept busy (an asynchronous backend then reads staged
  memory long after Python has moved on), fused bursts give the weights of bursts each waited for."""
  config = small_config.replace(net_arch=(32, 32), noisy=True, gradient_steps=4, train_freq=4)
  # ≈1 s of queued work per burst on POCL with one thread (too little, and the old staging still passed on CL). The
  # CPU device copies host memory at once, so there it only costs time: kept small.
  size = 64 if DEVICE == "CPU" else 1024
  busy = Tensor.rand(size, size, device=DEVICE).realize()

  def run(wait: bool) -> list[np.ndarray]:
    agent = make_agent(config, host_views=False)
    memory, rng = filled_buffer(), np.random.default_rng(0)
    for _ in range(4):
      if not wait:  # queued work the next staging copies must wait behind; never waited for here
        x = busy
        for _ in range(6): x = (x @ busy).tanh()
        x.realize()
      agent.updates(4, lambda batch: memory.sample_into(batch, rng), rng)
      if wait: Device[agent.device].synchronize()
    return params_numpy(agent.online)

  for waited, busy_run in zip(run(wait=True), run(wait=False)): np.testing.assert_array_equal(busy_run, waited)


def test_rng_state_of_devices_not_in_use_is_left_out():
  """A snapshot may hold tinygrad RNG state for a device missing where the run resumes (issue 17: a CL run resumed
  on the CPU ended in an OpenCL error): only the device in use is restored."""
  Tensor.manual_seed(3)
  Tensor.rand(4, device=DEVICE).realize()
  saved = snapshot.tinygrad_rng_state()
  saved["devices"]["NOSUCHDEVICE"] = saved["devices"][DEVICE]
  expected = Tensor.rand(5, device=DEVICE).numpy()
  Tensor.manual_seed(99)
  Tensor.rand(7, device=DEVICE).realize()
  snapshot.restore_tinygrad_rng(saved, DEVICE)
  np.testing.assert_array_equal(Tensor.rand(5, device=DEVICE).numpy(), expected)


# Runs with DEV unset, after making tinygrad's own pick (Device.DEFAULT) its NULL device, as installing an OpenCL
# driver or a GPU runtime would make it CL or CUDA. tinydqn must still run on the CPU and never open that device.
DEFAULT_DEVICE_SCRIPT = """
import json, sys
import numpy as np
from tinygrad import Device
Device._select_device = "NULL"
from tinydqn.agent import DQNAgent
from tinydqn.buffers import ReplayBuffer
from tinydqn.cli import main
from tinydqn.config import Config
config = Config(env_id="CartPole-v1", net_arch=(8,), batch_size=4, buffer_size=64, learning_starts=10, total_timesteps=200,
                eval_freq=0, dueling=True, noisy=True, distributional=True, atoms=5, gradient_steps=2, train_freq=2)
memory, rng = ReplayBuffer(64, (4,), np.float32), np.random.default_rng(0)
for _ in range(16): memory.add(rng.normal(size=(1, 4)), [1], [1.0], rng.normal(size=(1, 4)), [False], [False])
devices = []
for host_views in (None, False):
  agent = DQNAgent(config, (4,), np.dtype(np.float32), 2, host_views=host_views)
  agent.updates(3, lambda batch: memory.sample_into(batch, rng), rng)
  agent.act(np.zeros((1, 4), np.float32), 0.0, rng)
  agent.sync_target()
  devices.append(agent.device)
code = main(["train", "--run-dir", sys.argv[1], "--total-timesteps", "200", "--learning-starts", "50", "--batch-size", "8",
             "--net-arch", "8", "--train-freq", "4", "--gradient-steps", "2", "--eval-freq", "100", "--eval-episodes", "1",
             "--quiet"])
print(json.dumps({"devices": devices, "code": code, "opened": sorted(Device._opened_devices)}))
"""


@pytest.mark.cpu_stage  # runs on the CPU whatever DEV says
def test_the_cpu_is_the_default_whatever_tinygrad_would_pick(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "DEV"}
  proc = subprocess.run([sys.executable, "-c", DEFAULT_DEVICE_SCRIPT, str(tmp_path / "run")], capture_output=True,
                        text=True, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["devices"] == ["CPU", "CPU"] and result["code"] == 0
  assert "NULL" not in result["opened"], result["opened"]
  assert " on CPU" in proc.stderr  # the device is said at start
  assert json.loads((tmp_path / "run" / "config.json").read_text())["device"] == "CPU"
  assert json.loads((tmp_path / "run" / "summary.json").read_text())["device"] == "CPU"


def tinydqn(*args: str, env: dict | None = None, wait: bool = True):
  cmd = [sys.executable, "-m", "tinydqn", *args]
  env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
  if not wait: return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> bool:
  lines = proc.stderr.strip().splitlines()
  return (proc.returncode == 2 and "Traceback" not in proc.stderr and lines[-1].startswith("tinydqn: error: ")
          and all(f in lines[-1] for f in fragments))


SMALL = ["--seed", "2", "--learning-starts", "100", "--train-freq", "8", "--gradient-steps", "8", "--batch-size", "16",
         "--net-arch", "16", "--target-update-interval", "100", "--eval-freq", "200", "--eval-episodes", "2",
         "--checkpoint-freq", "200", "--quiet"]


def rewrite_snapshot_rng_device(run: Path, device: str) -> None:
  """Makes every snapshot of `run` say its tinygrad RNG state belongs to `device`, checksums updated."""
  for step in snapshot.snapshot_dirs(run / "checkpoints"):
    state = cloudpickle.loads((step / "state.pkl").read_bytes())
    per_device = state["tinygrad_rng"]["devices"]
    state["tinygrad_rng"]["devices"] = {device: next(iter(per_device.values()))}  # one state, under another name
    (step / "state.pkl").write_bytes(cloudpickle.dumps(state))
    manifest = json.loads((step / "manifest.json").read_text())
    manifest["files"]["state.pkl"] = {"bytes": (step / "state.pkl").stat().st_size, "sha256": snapshot._sha256(step / "state.pkl")}
    (step / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.cpu_stage  # runs on the CPU whatever DEV says
def test_resume_where_the_snapshots_device_is_missing(tmp_path):
  """Issue 17's case: a run trained on CL, resumed with --device CPU where OpenCL is missing (here an empty ICD
  directory hides any OpenCL driver), continues on the CPU with a warning instead of ending in an OpenCL error."""
  run = tmp_path / "run"
  assert tinydqn("train", "--run-dir", str(run), "--total-timesteps", "300", *SMALL).returncode == 0
  (run / "summary.json").unlink()  # unfinished again: resuming starts from the snapshot at step 200
  config = json.loads((run / "config.json").read_text())
  (run / "config.json").write_text(json.dumps({**config, "device": "CL"}))
  rewrite_snapshot_rng_device(run, "CL")
  (tmp_path / "no_opencl").mkdir()
  hidden = {"OCL_ICD_VENDORS": str(tmp_path / "no_opencl")}
  missing = tinydqn("train", "--resume", str(run), "--device", "CL", env=hidden)
  assert one_line_error(missing, "device 'CL' is not usable here"), missing.stderr
  proc = tinydqn("train", "--resume", str(run), "--device", "CPU", env=hidden)
  assert proc.returncode == 0, proc.stderr
  assert "trained on CL and continues on CPU" in proc.stderr
  assert json.loads((run / "summary.json").read_text())["device"] == "CPU"


@pytest.mark.cpu_stage
@pytest.mark.parametrize("args, dev, fragments", [
  (["train", "--device", "NOSUCHDEV"], None, ["device 'NOSUCHDEV' is not usable here"]),
  (["train", "--resume", ".", "--device", "nosuchdev"], None, ["device 'NOSUCHDEV' is not usable here"]),
  (["eval", ".", "--device", "NOSUCHDEV"], None, ["device 'NOSUCHDEV' is not usable here"]),
  (["train"], "NOSUCHDEV", ["device 'NOSUCHDEV' is not usable here"]),
  (["train"], "A:B:C:D", ["DEV='A:B:C:D' is not a tinygrad device"])])
def test_an_unusable_device_is_one_line_and_exit_2(tmp_path, args, dev, fragments):
  env = {**os.environ, "DEV": dev} if dev else os.environ
  proc = subprocess.run([sys.executable, "-m", "tinydqn", *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                        timeout=300)
  assert one_line_error(proc, *fragments), proc.stderr
  assert list(tmp_path.iterdir()) == []


def deterministic_rows(path: Path) -> list[dict]:
  with open(path) as f: return [{k: v for k, v in r.items() if k not in WALL_CLOCK_COLUMNS} for r in csv.DictReader(f)]


@pytest.mark.skipif(DEVICE == "CPU", reason="test_resume.py covers the CPU; CI runs this with DEV=CL")
def test_train_eval_interrupt_resume_on_this_device(tmp_path):
  """On the suite's device (CL in CI): two same-seed runs with fused bursts, one interrupted by SIGINT and resumed,
  give identical rows and weights; evaluation runs there too."""
  steps = ["--total-timesteps", "700"]  # 75 fused bursts of 8; snapshots at 200, 400, 600
  reference = tinydqn("train", "--run-dir", str(tmp_path / "ref"), *steps, *SMALL)
  assert reference.returncode == 0 and f" on {DEVICE}" in reference.stderr, reference.stderr
  ev = tinydqn("eval", str(tmp_path / "ref"), "--episodes", "2", "--json")
  assert ev.returncode == 0 and len(json.loads(ev.stdout)["returns"]) == 2, ev.stderr
  run = tmp_path / "run"
  proc = tinydqn("train", "--run-dir", str(run), *steps, *SMALL, wait=False)
  while proc.poll() is None and not snapshot.snapshot_dirs(run / "checkpoints"): time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=600)
  if proc.returncode == 0: pytest.skip("the run finished before the signal arrived")
  assert proc.returncode == 130 and "--resume" in err, err
  resumed = tinydqn("train", "--resume", str(run))
  assert resumed.returncode == 0, resumed.stderr
  for name in ("metrics.csv", "eval.csv"):
    assert deterministic_rows(run / name) == deterministic_rows(tmp_path / "ref" / name), name
  assert (run / "checkpoints/final.safetensors").read_bytes() == (tmp_path / "ref/checkpoints/final.safetensors").read_bytes()
  for d in (run, tmp_path / "ref"): assert json.loads((d / "summary.json").read_text())["device"] == DEVICE
