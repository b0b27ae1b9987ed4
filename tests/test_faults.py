"""Defects a review reproduced, each pinned by the test that failed before its fix: nothing lost, nothing hung, no
traceback (the review's item number in each docstring)."""
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

import tinydqn.evaluate
import tinydqn.snapshot
from tinydqn import program_cache, wide_kernels
from tinydqn.agent import DQNAgent
from tinydqn.config import make_config
from tinydqn.errors import Interrupted, UserError
from tinydqn.evaluate import EvaluationStopped, evaluate
from tinydqn.rundir import lock_run_dir
from tinydqn.sweep import make_trials
from tinydqn.train import _Run, train

# What these check does not depend on the device (CI runs the suite again on CL without them).
pytestmark = pytest.mark.cpu_stage

TINY = dict(total_timesteps=1200, learning_starts=100, train_freq=4, gradient_steps=1, batch_size=16, net_arch=(16,),
            eval_freq=0, checkpoint_freq=400, keep_checkpoints=3, stop_at_return=None)
# Registers the odd environments below, then runs the command line: `python -c DRIVER ARGS...`
DRIVER = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_faults; " \
         "from tinydqn.cli import main; sys.exit(main(sys.argv[1:]))"


class Endless(gym.Env):
  """Never terminates and sets no time limit (as CliffWalking, for a policy that walks into a wall)."""
  observation_space, action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,)), gym.spaces.Discrete(2)

  def __init__(self, render_mode=None): pass
  def reset(self, seed=None, options=None): return np.zeros(2, np.float32), {}
  def step(self, action): return np.zeros(2, np.float32), 0.0, False, False, {}


class ScalarObservation(Endless):
  observation_space = gym.spaces.Box(-1.0, 1.0, shape=())

  def reset(self, seed=None, options=None): return np.float32(0.0), {}
  def step(self, action): return np.float32(0.5 * action), 1.0, bool(action), False, {}


class SequenceObservation(Endless):
  observation_space = gym.spaces.Sequence(gym.spaces.Discrete(3))


gym.register("Endless-v0", entry_point=Endless)
gym.register("ScalarObservation-v0", entry_point=ScalarObservation, max_episode_steps=20)
gym.register("SequenceObservation-v0", entry_point=SequenceObservation)


def cli(*args: str, cwd: Path | None = None, **popen) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-c", DRIVER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"}, **popen)


def one_line_error(proc: subprocess.Popen, *fragments: str) -> None:
  _, err = proc.communicate(timeout=300)
  lines = err.strip().splitlines()
  assert proc.returncode == 2 and "Traceback" not in err, err
  assert lines[-1].startswith("tinydqn: error: ") and all(f in lines[-1] for f in fragments), err


# ---- data and runs ----

def test_a_run_directory_in_use_is_refused(tmp_path):
  """(1) A second run cannot take a run directory while a run holds it: --force and --resume name the holder."""
  run = tmp_path / "shared_run"
  holder = cli("train", "CartPole-v1", "--run-dir", str(run), "--total-timesteps", "1000000", "--quiet")
  try:
    deadline = time.time() + 120
    while not (run / "metrics.csv").exists() and time.time() < deadline: time.sleep(0.1)
    before = (run / "config.json").read_bytes()
    one_line_error(cli("train", "CartPole-v1", "--seed", "1", "--run-dir", str(run), "--force"), "in use",
                   f"pid {holder.pid}")
    one_line_error(cli("train", "--resume", str(run)), "in use", f"pid {holder.pid}")
    assert (run / "config.json").read_bytes() == before and holder.poll() is None  # untouched, still training
  finally:
    holder.kill()
    holder.wait()
  with lock_run_dir(run):  # the kernel released the killed holder's lock
    with pytest.raises(UserError, match="in use"):
      with lock_run_dir(run): pass


def test_an_evaluation_episode_is_capped_and_a_stop_ends_it(monkeypatch):
  """(2) Greedy evaluation of an env without a time limit ends, and a stop signal ends an evaluation."""
  env, agent = gym.make("Endless-v0"), DQNAgent(make_config("Endless-v0", **TINY), (2,), np.dtype(np.float32), 2)
  monkeypatch.setattr(tinydqn.evaluate, "DEFAULT_MAX_EPISODE_STEPS", 3000)
  assert evaluate(agent, env, 2, seed=0).lengths == (3000, 3000)
  with pytest.raises(EvaluationStopped): evaluate(agent, env, 1, seed=0, should_stop=lambda: True)
  assert tinydqn.evaluate.max_episode_steps(gym.make("CartPole-v1")) == 500  # an env's own limit comes first


def test_a_signal_during_an_evaluation_stops_the_run(tmp_path):
  """(2) SIGTERM while an endless evaluation runs ends the run at once, saying a resume redoes that evaluation."""
  run = tmp_path / "run"
  proc = cli("train", "Endless-v0", "--run-dir", str(run), "--total-timesteps", "2000", "--learning-starts", "100",
             "--eval-freq", "300", "--eval-episodes", "1000", "--checkpoint-freq", "200", "--net-arch", "8", "--quiet")
  deadline = time.time() + 120
  while not list((run / "checkpoints").glob("step_*")) and time.time() < deadline: time.sleep(0.05)
  time.sleep(3)  # past step 300: inside the evaluation, whose 1000 episodes of 108,000 steps would take hours
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 143 and "Traceback" not in err, err
  assert "evaluation at this step was cut short" in err and "step_000000000200" in err
  assert not (run / "eval.csv").read_text().strip().splitlines()[1:]  # nothing of the cut evaluation was kept


def enospc_once(monkeypatch, nth: int) -> None:
  calls, original = {"n": 0}, tinydqn.snapshot.np.savez
  def savez(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == nth: raise OSError(errno.ENOSPC, "No space left on device")
    return original(*args, **kwargs)
  monkeypatch.setattr(tinydqn.snapshot.np, "savez", savez)


def test_a_disk_that_fills_up_mid_snapshot_skips_it(tmp_path, monkeypatch, capfd):
  """(3) ENOSPC while a snapshot is written: the snapshot is skipped with a warning, its temporary folder removed,
  and the run goes on."""
  enospc_once(monkeypatch, 2)
  result = train(make_config("CartPole-v1", **TINY), tmp_path / "run", progress=False)
  assert result.steps == 1200 and "snapshot at step 800 skipped: the disk filled up" in capfd.readouterr().err
  assert sorted(p.name for p in (tmp_path / "run/checkpoints").glob("*step_*")) == ["step_000000000400"]


def interrupt_at(monkeypatch, step: int) -> None:
  learn = _Run.learn
  def learn_then_signal(self, before):
    learn(self, before)
    if before < step <= self.state.step: os.kill(os.getpid(), signal.SIGINT)
  monkeypatch.setattr(_Run, "learn", learn_then_signal)


@pytest.mark.parametrize("full_from, message", [
  (0, "there is no snapshot to resume from"),
  (401, "a resume continues from the newest snapshot, step_000000000400"),
])
def test_ctrl_c_says_which_snapshot_a_resume_would_use(tmp_path, monkeypatch, full_from, message):
  """(4) Ctrl-C when the disk is too full for its snapshot says so, and what a resume would continue from."""
  usage = tinydqn.snapshot.shutil.disk_usage
  monkeypatch.setattr(tinydqn.snapshot.shutil, "disk_usage",
                      lambda p: SimpleNamespace(free=0) if state["step"] >= full_from else usage(p))
  state = {"step": 0}
  save = tinydqn.snapshot.save_snapshot
  def save_snapshot(ckpt_dir, step, *args):
    state["step"] = step
    return save(ckpt_dir, step, *args)
  monkeypatch.setattr("tinydqn.train.save_snapshot", save_snapshot)
  interrupt_at(monkeypatch, 700)
  with pytest.raises(Interrupted) as e: train(make_config("CartPole-v1", **TINY), tmp_path / "run", progress=False)
  assert "skipped (too little disk space)" in str(e.value) and message in str(e.value), str(e.value)
  assert "snapshot written" not in str(e.value)


def test_sweep_trials_of_different_values_get_different_names_and_equal_values_are_refused():
  """(5) Two grid values are two run directories; two spellings of one number are refused."""
  names = [t.name for t in make_trials({"grid": {"learning_rate": [2.5e-4, 2.5000001e-4]}})]
  assert len(set(names)) == 2, names
  with pytest.raises(UserError, match="twice"): make_trials({"grid": {"learning_rate": [1e-3, 0.001]}})


# ---- bad input found early ----

@pytest.mark.parametrize("args, fragments", [
  (["--terminal-fraction", "1.5"], ["terminal_fraction", "[0, 1)"]),
  (["--terminal-fraction", "-0.5"], ["terminal_fraction"]),
  (["--terminal-fraction", "0.25", "--prioritized"], ["terminal_fraction", "prioritized"]),
  (["--network", "nature_cnn"], ["nature_cnn", "image observations"]),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, args, fragments):
  """(6, 7) Out-of-range and contradictory settings, and a network that cannot take the observations, fail in one
  line before the run directory exists, so the corrected command then runs."""
  one_line_error(cli("train", "CartPole-v1", "--run-dir", str(tmp_path / "nd"), *args), *fragments)
  assert not (tmp_path / "nd").exists()


def test_odd_observation_spaces(tmp_path):
  """(7) A scalar Box observation trains (as one feature); a Sequence observation is a one-line error."""
  result = train(make_config("ScalarObservation-v0", **{**TINY, "total_timesteps": 300, "checkpoint_freq": 0}),
                 tmp_path / "scalar", progress=False)
  assert result.steps == 300 and result.agent.q_values(np.zeros((3, 1), np.float32)).shape == (3, 2)
  with pytest.raises(UserError, match="fixed shape"):
    train(make_config("SequenceObservation-v0", **TINY), tmp_path / "seq", progress=False)
  assert not (tmp_path / "seq").exists()


def test_file_and_folder_mistakes_are_one_line_errors(tmp_path):
  """(8) A plot file matplotlib cannot write, a run directory under a file, a damaged config.json."""
  run = tmp_path / "run"
  train(make_config("CartPole-v1", **{**TINY, "total_timesteps": 300, "eval_freq": 150, "eval_episodes": 1}), run,
        progress=False)
  one_line_error(cli("plot", str(run), "-o", str(tmp_path / "out.txt")), "out.txt", ".png")
  (tmp_path / "afile").write_text("")
  one_line_error(cli("train", "--run-dir", str(tmp_path / "afile/sub")), "afile", "file")
  (run / "config.json").write_text("{ damaged")
  one_line_error(cli("plot", str(run), "-o", str(tmp_path / "c.png")), "cannot read", "config.json")


# ---- caches ----

def test_the_program_cache_tells_arm_cpus_apart_and_shares_nothing_unidentified(tmp_path, monkeypatch):
  """(10) /proc/cpuinfo of aarch64 (no `model name`, no `flags`) still identifies the CPU; a CPU it cannot identify
  keeps no programs on disk."""
  arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32\nCPU implementer\t: 0x41\n" \
        "CPU architecture: 8\nCPU variant\t: 0x{v}\nCPU part\t: 0x{part}\nCPU revision\t: 1\n"
  (tmp_path / "a1").write_text(arm.format(v=3, part="d0c"))
  (tmp_path / "a2").write_text(arm.format(v=1, part="d40"))
  a1, a2 = wide_kernels.cpu_description(str(tmp_path / "a1")), wide_kernels.cpu_description(str(tmp_path / "a2"))
  assert a1 and a2 and a1 != a2
  key = (b"\x01", type("Renderer", (), {}), SimpleNamespace(device="CPU"))
  assert program_cache.disk_key(key) is not None  # this machine identifies itself
  monkeypatch.setattr(wide_kernels, "cpu_description", lambda cpuinfo="": ())
  assert program_cache.disk_key(key) is None
