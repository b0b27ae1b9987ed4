"""tinygrad's CPU levers must not change results: HCQ2=1 trains bit-identically to the stock path, with
bursts of gradient steps fused into one jitted call."""
import json
import os
import subprocess
import sys

import pytest

RUN = """
import hashlib, json
from tinydqn.config import Config
from tinydqn.train import train
config = Config(env_id="CartPole-v1", seed=2, total_timesteps=1500, learning_starts=200, batch_size=32, train_freq=8,
                gradient_steps=4, net_arch=(32, 32), target_update_interval=100, eval_freq=500, eval_episodes=2,
                checkpoint_freq=0, **json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))
result = train(config, sys.argv[1], progress=False)
weights = (result.run_dir / "checkpoints" / "final.safetensors").read_bytes()
print(hashlib.sha256(weights).hexdigest(), result.final_eval.mean_return)
"""


@pytest.mark.cpu_only  # HCQ2 is the CPU device's command queue
@pytest.mark.parametrize("lever", ["HCQ2"])
@pytest.mark.parametrize("fields", [{}, {"lagged_acting": True}, {"lagged_acting": True, "fused_updates": 1}],
                         ids=["default", "lagged", "lagged-unfused"])
def test_lever_gives_bit_identical_training(tmp_path, lever, fields):
  """With lagged_acting, HCQ2 runs each round's last call while the loop acts and samples: the same numbers as the
  stock path, which runs every kernel before returning, show that nothing read or rewrote a running step's buffers."""
  outputs = []
  for value in ("0", "1"):
    env = {**os.environ, lever: value}
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + RUN, str(tmp_path / f"{lever}{value}"), json.dumps(fields)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    outputs.append(proc.stdout.strip().splitlines()[-1])
  assert outputs[0] == outputs[1]


COUNT_BUILT = """
from tinygrad import Device
Device["CPU"]  # opening it builds the device's own runtime programs (with HCQ2), outside the program cache
import tinygrad.codegen as codegen
built, stock_build = [], codegen.do_to_program
def counted(ast, renderer):
  built.append(ast.key)
  return stock_build(ast, renderer)
codegen.do_to_program = counted
"""


@pytest.mark.cpu_only  # only the CPU device's programs are kept on disk
def test_programs_kept_on_disk_are_read_back_by_the_next_process_with_identical_training(tmp_path):
  """A second process with the same disk cache builds no kernel again and trains bit-identically; with
  TINYDQN_PROGRAM_CACHE=0 it builds them all again, with the same result."""
  script = "import sys\n" + COUNT_BUILT + RUN + "print(len(built))\n"
  env = {**os.environ, "CACHEDB": str(tmp_path / "cache.db"), "PARALLEL": "0"}  # PARALLEL=0: built in this process
  outputs = []
  for run, cache in enumerate(("1", "1", "0")):
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"run{run}")], capture_output=True, text=True,
                          env={**env, "TINYDQN_PROGRAM_CACHE": cache}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    outputs.append(proc.stdout.strip().splitlines()[-2:])
  (cold, built_cold), (warm, built_warm), (off, built_off) = outputs
  assert int(built_cold) > 10 and int(built_warm) == 0 and int(built_off) == int(built_cold)
  assert cold == warm == off


def test_an_unreadable_or_unwritable_program_cache_means_building_again(monkeypatch):
  import sqlite3
  from collections import namedtuple

  import tinygrad.helpers
  from tinydqn.program_cache import DiskBackedPrograms
  def broken(*args, **kwargs): raise sqlite3.OperationalError("database is locked")
  monkeypatch.setattr(tinygrad.helpers, "diskcache_get", broken)
  monkeypatch.setattr(tinygrad.helpers, "diskcache_put", broken)
  key = (bytes(32), DiskBackedPrograms, namedtuple("Target", "device")("CPU"), 0)  # the shape of to_program_key
  programs = DiskBackedPrograms()
  assert key not in programs and programs.get(key) is None  # a miss: tinygrad then builds the program
  programs[key] = "built"  # the write fails; the program is still kept in memory
  assert key in programs and programs[key] == "built"


LEVERS_SET = """
import os, sys
from tinydqn.fast import use_fast_kernels
print(sorted(use_fast_kernels(sys.argv[1] if len(sys.argv) > 1 else None, search=len(sys.argv) > 2).items()))
import tinygrad
try: use_fast_kernels()
except RuntimeError as e: print("refused after import")
"""


BOTH = "[('BEAM', '2'), ('HCQ2', '1')]"


@pytest.mark.parametrize("args, expected", [([], "[('HCQ2', '1')]"), (["CPU"], "[('HCQ2', '1')]"),
                                            (["CPU", "search"], BOTH), (["CUDA", "search"], "[('BEAM', '2')]"),
                                            (["CUDA"], "[]")])
def test_fast_sets_the_levers_before_tinygrad_starts(args, expected):
  env = {k: v for k, v in os.environ.items() if k not in ("HCQ2", "BEAM", "DEV")}
  proc = subprocess.run([sys.executable, "-c", LEVERS_SET, *args], env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [expected, "refused after import"]


def test_a_value_the_user_set_wins():
  env = {**{k: v for k, v in os.environ.items() if k not in ("BEAM", "DEV")}, "HCQ2": "0"}
  proc = subprocess.run([sys.executable, "-c", LEVERS_SET], env=env, capture_output=True, text=True, timeout=120)
  assert proc.stdout.splitlines()[0] == "[('HCQ2', '0')]", proc.stderr


TRAIN_FROM_PYTHON = """
import sys, warnings
from tinydqn.config import Config
from tinydqn.train import train
config = Config(env_id="CartPole-v1", total_timesteps=100, learning_starts=50, train_freq=4, gradient_steps=1,
                batch_size=16, net_arch=(16,), eval_freq=100, eval_episodes=1)
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  for run in ("a", "b"): train(config, sys.argv[1] + run, progress=False)
print(sum("use_fast_kernels()" in str(w.message) for w in caught))
"""


@pytest.mark.cpu_only
@pytest.mark.parametrize("hcq2, warned", [(None, "1"), ("0", "0"), ("1", "0")])
def test_training_from_python_without_the_command_queue_warns_once(tmp_path, hcq2, warned):
  """From Python, HCQ2 is the caller's to set before tinygrad starts; a CPU run that nobody chose it for says how."""
  env = {k: v for k, v in os.environ.items() if k not in ("HCQ2", "BEAM")} | ({"HCQ2": hcq2} if hcq2 else {})
  proc = subprocess.run([sys.executable, "-c", TRAIN_FROM_PYTHON, str(tmp_path / "run")], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines()[-1] == warned  # how many of the warning were raised over two runs


def test_waiting_for_a_hung_queue_times_out(monkeypatch):
  import types
  import tinygrad
  from tinydqn.fast import wait_for_device
  counter = lambda n: types.SimpleNamespace(_buf=types.SimpleNamespace(cpu_view=lambda: types.SimpleNamespace(view=lambda fmt: [n])))
  hung = types.SimpleNamespace(workers=[types.SimpleNamespace(put=counter(5), done=counter(3))], synchronize=lambda: None)
  monkeypatch.setattr(tinygrad, "Device", {"FAKE": hung})
  with pytest.raises(TimeoutError, match="FAKE still has kernels queued after 0.05 s"): wait_for_device("FAKE", timeout_s=0.05)


DIRECT_REPLAY = """
import os
os.environ["HCQ2"] = "1"
import numpy as np
from tinygrad import Tensor
from tinydqn.agent import DQNAgent
from tinydqn.buffers import ReplayBuffer
from tinydqn.config import Config
memory, rng = ReplayBuffer(256, (4,), np.float32, num_envs=256), np.random.default_rng(0)
memory.add(rng.normal(size=(256, 4)), rng.integers(2, size=256), rng.normal(size=256), rng.normal(size=(256, 4)),
           rng.random(256) < 0.1, np.zeros(256))
agents = []
for direct in (True, False):
  Tensor.manual_seed(0)
  agent = DQNAgent(Config(net_arch=(16, 16), batch_size=8, gradient_steps=4, fused_updates=2), (4,), np.dtype(np.float32), 2)
  if not direct: agent._update._looked = agent._update_fused._looked = agent._sync._looked = True  # TinyJit's own replay
  draws = np.random.default_rng(1)
  for _ in range(3):
    agent.updates(5, lambda batch: memory.sample_into(batch, draws))  # 2 fused calls, then one single step
    agent.sync_target()
  agents.append(agent)
fast, stock = agents
assert all(j._direct is not None for j in (fast._update, fast._update_fused, fast._sync)), "direct replay not in use"
assert all(j._direct is None for j in (stock._update, stock._update_fused, stock._sync))
stock_arrays = stock.state_arrays()
for name, a in fast.state_arrays().items(): assert np.array_equal(a, stock_arrays[name]), name
print("ok")
"""


@pytest.mark.cpu_only
def test_direct_replay_of_captured_jits_is_used_under_hcq2_and_changes_no_number():
  """Under HCQ2 the agent's jits replay as one direct call of their submission program (tinydqn.jit_replay): the
  weights, optimizer state and target after fused, single and sync calls equal TinyJit's own replay's bit for bit."""
  proc = subprocess.run([sys.executable, "-c", DIRECT_REPLAY], capture_output=True, text=True, timeout=300,
                        env={k: v for k, v in os.environ.items() if k not in ("TINYDQN_DIRECT_JIT", "DEBUG")})
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().endswith("ok")
