"""A run killed at any moment and resumed is exactly the run that was never killed."""
import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tinygrad import Tensor

from tinydqn.agent import DQNAgent
from tinydqn.config import make_config
from tinydqn.errors import TrainingDiverged, UserError
from tinydqn.logger import WALL_CLOCK_COLUMNS
from tinydqn.devices import resolve_device
from tinydqn.train import read_run_config, resume, train

CONFIG = make_config("CartPole-v1", seed=5, total_timesteps=4000, learning_starts=300, train_freq=4,
                gradient_steps=1, batch_size=32, net_arch=(32,), target_update_interval=100, eval_freq=1000,
                eval_episodes=3, checkpoint_freq=400, keep_checkpoints=3, learning_rate=1e-3, double_q=False,
                learning_rate_schedule="constant")
FLAGS = ["--seed", "5", "--total-timesteps", "4000", "--learning-starts", "300", "--train-freq", "4",
         "--gradient-steps", "1", "--batch-size", "32", "--net-arch", "32", "--target-update-interval", "100",
         "--eval-freq", "1000", "--eval-episodes", "3", "--checkpoint-freq", "400", "--keep-checkpoints", "3",
         "--learning-rate", "1e-3", "--no-double-q", "--learning-rate-schedule", "constant", "--quiet"]
# Runs the CLI, but exits abruptly (like SIGKILL) at the Nth call of a function inside the snapshot writer.
CRASH_DRIVER = """
import os, sys
import tinydqn.snapshot as snap
target, nth = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}
import tinydqn.checkpoint as ckpt
owner = snap.os if target == "rename" else snap.np if target == "savez" else ckpt
original = getattr(owner, target)
def crash(*args, **kwargs):
  calls["n"] += 1
  if calls["n"] == nth: os._exit(137)
  return original(*args, **kwargs)
setattr(owner, target, crash)
from tinydqn.cli import main
sys.exit(main(sys.argv[3:]))
"""


def deterministic(path: Path) -> list[dict]:
  with open(path) as f: return [{k: v for k, v in r.items() if k not in WALL_CLOCK_COLUMNS} for r in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
  for name in ("metrics.csv", "eval.csv"): assert deterministic(a / name) == deterministic(b / name), name
  for name in ("final.safetensors", "best.safetensors"):  # the best evaluated policy is part of the loop state too
    assert (a / "checkpoints" / name).read_bytes() == (b / "checkpoints" / name).read_bytes(), name
  assert json.loads((a / "checkpoints/best.json").read_text())["eval"] == json.loads((b / "checkpoints/best.json").read_text())["eval"]


def cli(*args: str, driver: list[str] | None = None) -> subprocess.Popen:
  cmd = [sys.executable, "-c", CRASH_DRIVER, *driver, *args] if driver else [sys.executable, "-m", "tinydqn", *args]
  return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
  return train(CONFIG, tmp_path_factory.mktemp("ref") / "run", progress=False).run_dir


@pytest.mark.cpu_stage
def test_cli_flags_match_the_reference_config(reference, tmp_path):
  proc = cli("train", "--run-dir", str(tmp_path / "r"), *FLAGS, "--total-timesteps", "400")
  proc.wait(timeout=300)
  config, device = read_run_config(tmp_path / "r")
  assert config == CONFIG.replace(total_timesteps=400) and device == resolve_device()


def last_logged_step(run: Path) -> int:
  try: lines = (run / "metrics.csv").read_text().strip().splitlines()
  except FileNotFoundError: return 0
  return int(lines[-1].split(",")[0]) if len(lines) > 1 and lines[-1].count(",") >= 8 else 0


def kill_at_step(proc: subprocess.Popen, run: Path, step: int) -> None:
  """SIGKILL once the run has logged an episode past `step` (or let it be if it ends first)."""
  while proc.poll() is None and last_logged_step(run) < step: time.sleep(0.005)
  if proc.poll() is None:
    proc.kill()
  proc.wait()


@pytest.mark.cpu_stage
def test_killed_at_many_points_resumes_identically(reference, tmp_path):
  """Crashes inside snapshot writes (in the weights file, in the replay file, before the rename), then
  SIGKILLs at random steps, one after another on the same run; it must still equal the reference."""
  run, rng = tmp_path / "run", random.Random(0)
  crash_points = [["save_file", "2"], ["savez", "3"], ["rename", "4"]]  # the Nth snapshot, mid-write
  kills = 0
  proc = cli("train", "--run-dir", str(run), *FLAGS, driver=crash_points.pop(0))
  while True:
    if kills >= 6: proc.wait()  # enough kills: let the last resume finish
    elif proc.args[1] == "-c": proc.wait()  # a crash driver ends itself
    else: kill_at_step(proc, run, min(last_logged_step(run) + rng.randint(100, 600), 3700))
    if (run / "summary.json").exists(): break
    assert proc.returncode in (-signal.SIGKILL, 137), proc.stderr.read()
    kills += 1
    args = ("train", "--resume", str(run), "--quiet")
    proc = cli(*args, driver=crash_points.pop(0)) if crash_points else cli(*args)
  assert kills >= 6, f"only {kills} kills landed before the run finished"
  assert not list((run / "checkpoints").glob(".step_*.tmp"))  # leftovers of crashed writes are cleaned up
  assert_same_run(reference, run)


@pytest.mark.cpu_stage
def test_damaged_snapshots_are_named_and_skipped(reference, tmp_path):
  run = tmp_path / "run"
  cli("train", "--run-dir", str(run), *FLAGS, driver=["save_file", "5"]).wait(timeout=300)
  # dies in snapshot 4 (the 5th weights file: the first evaluation, at step 1000, wrote checkpoints/best)
  snapshots = sorted((run / "checkpoints").glob("step_*"))
  assert [s.name for s in snapshots] == ["step_000000000400", "step_000000000800", "step_000000001200"]
  evaluated = cli("eval", str(run), "--json")  # an unfinished run is evaluated with its newest snapshot
  out, _ = evaluated.communicate(timeout=120)
  assert evaluated.returncode == 0 and json.loads(out)["step"] == 1200
  replay = snapshots[2] / "replay.npz"
  data = bytearray(replay.read_bytes())
  data[len(data) // 2] ^= 0xFF  # one flipped byte in the newest
  replay.write_bytes(bytes(data))
  state = snapshots[1] / "state.pkl"
  state.write_bytes(state.read_bytes()[:100])  # the one before: truncated
  proc = cli("train", "--resume", str(run), "--quiet")
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  assert "step_000000001200 is unusable" in err and "step_000000000800 is unusable" in err
  assert_same_run(reference, run)  # resumed from step 400: still exact


@pytest.mark.cpu_stage
def test_no_usable_snapshot_is_a_clear_error(tmp_path):
  run = tmp_path / "run"
  cli("train", "--run-dir", str(run), *FLAGS, driver=["save_file", "2"]).wait(timeout=300)
  (run / "checkpoints" / "step_000000000400" / "agent.safetensors").write_bytes(b"")
  with pytest.raises(UserError, match="no usable snapshot"): resume(run, progress=False)
  proc = cli("train", "--resume", str(run))
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2 and err.strip().splitlines()[-1].startswith("tinydqn: error: no usable snapshot")


@pytest.mark.cpu_stage
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_writes_a_snapshot_and_exits_with_a_resume_hint(reference, tmp_path, sig, code):
  run = tmp_path / "run"
  proc = cli("train", "--run-dir", str(run), *FLAGS)
  deadline = time.time() + 120
  while not list((run / "checkpoints").glob("step_*")) and time.time() < deadline: time.sleep(0.05)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  if (run / "summary.json").exists(): pytest.skip("the run finished before the signal arrived")
  assert proc.returncode == code and f"tinydqn train --resume {run}" in err and "Traceback" not in err
  proc = cli("train", "--resume", str(run), "--quiet")
  assert proc.wait(timeout=300) == 0
  assert_same_run(reference, run)


@pytest.mark.cpu_stage
def test_only_damage_makes_a_snapshot_unusable(tmp_path, monkeypatch):
  import tinydqn.snapshot as snapshots
  (tmp_path / snapshots.snapshot_name(400)).mkdir()
  def out_of_memory(path): raise MemoryError("replay.npz")
  monkeypatch.setattr(snapshots, "load_snapshot", out_of_memory)
  with pytest.raises(MemoryError): snapshots.load_latest_snapshot(tmp_path)  # not "damaged", not skipped


@pytest.mark.cpu_stage
def test_resume_refuses_what_it_cannot_continue(reference, tmp_path):
  with pytest.raises(UserError, match="not a run directory"): resume(tmp_path, progress=False)
  with pytest.raises(UserError, match="already finished"): resume(reference, progress=False)
  proc = cli("train", "CartPole-v1", "--resume", str(reference))
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2 and "--resume continues a run with its own config" in err


@pytest.mark.cpu_stage
def test_nan_loss_stops_with_a_message_and_keeps_snapshots(tmp_path, monkeypatch):
  calls = {"n": 0}
  original = DQNAgent.update
  def poisoned(self, *args, **kwargs):
    calls["n"] += 1
    return Tensor([float("nan"), 0.0]) if calls["n"] > 300 else original(self, *args, **kwargs)
  monkeypatch.setattr(DQNAgent, "update", poisoned)
  with pytest.raises(TrainingDiverged, match="loss became nan"): train(CONFIG, tmp_path / "run", progress=False)
  snapshots = sorted((tmp_path / "run" / "checkpoints").glob("step_*"))
  assert snapshots and all((s / "manifest.json").exists() for s in snapshots)
  assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.cpu_stage
def test_envs_and_csv_files_are_closed_when_a_run_fails(tmp_path, monkeypatch):
  import tinydqn.train as training
  from tinydqn.logger import CsvLog
  closed, opened = [], []
  def tracked(factory):
    def make(*args, **kwargs):
      env = factory(*args, **kwargs)
      opened.append(env)
      close = env.close
      env.close = lambda: closed.append(env) or close()
      return env
    return make
  def evaluation_fails(*args, **kwargs): raise RuntimeError("eval failed")
  monkeypatch.setattr(training, "make_env", tracked(training.make_env))
  monkeypatch.setattr(training, "make_vector_env", tracked(training.make_vector_env))
  monkeypatch.setattr(training, "evaluate", evaluation_fails)
  logs, close_log = [], CsvLog.close
  monkeypatch.setattr(CsvLog, "close", lambda self: logs.append(self) or close_log(self))
  with pytest.raises(RuntimeError, match="eval failed"): train(CONFIG, tmp_path / "run", progress=False)
  assert len(opened) == 3 and all(env in closed for env in opened)  # the check in train(), the eval env, the envs
  assert len(logs) == 2 and all(log._file.closed for log in logs)


@pytest.mark.cpu_stage
def test_snapshot_without_replay_still_resumes(tmp_path, monkeypatch):
  from tinydqn.buffers import ReplayBuffer
  config = CONFIG.replace(checkpoint_buffer=False, total_timesteps=1200)
  fills, original = [], ReplayBuffer.sample_into
  def spy(self, *args):
    fills.append(len(self))
    return original(self, *args)
  monkeypatch.setattr(ReplayBuffer, "sample_into", spy)
  proc = cli("train", "--run-dir", str(tmp_path / "run"), *FLAGS, "--total-timesteps", "1200", "--no-checkpoint-buffer",
             driver=["save_file", "2"])
  proc.wait(timeout=300)
  assert not (tmp_path / "run" / "checkpoints" / "step_000000000400" / "replay.npz").exists()
  result = resume(tmp_path / "run", progress=False)
  assert fills and min(fills) > config.learning_starts  # it refilled its memory before training again
  assert result.agent.config == config and json.loads((tmp_path / "run" / "summary.json").read_text())["total_timesteps"] == 1200


def test_tinygrad_rng_state_round_trips():
  from tinydqn.snapshot import restore_tinygrad_rng, tinygrad_rng_state
  Tensor.manual_seed(3)
  Tensor.rand(4).realize()
  saved = tinygrad_rng_state()
  expected = Tensor.rand(5).numpy()
  Tensor.manual_seed(99)
  Tensor.rand(7).realize()
  restore_tinygrad_rng(saved, resolve_device())
  np.testing.assert_array_equal(Tensor.rand(5).numpy(), expected)


def crash_after_second_snapshot(config, tmp_path: Path, monkeypatch) -> tuple[Path, list[Path]]:
  """Trains `config` uninterrupted into tmp_path/ref, then again into tmp_path/run, crashing right after its second
  snapshot is written. Returns the reference run's directory and the snapshots the crashed run wrote."""
  import tinydqn.train as training
  reference_run = train(config, tmp_path / "ref", progress=False).run_dir
  original, written = training.save_snapshot, []
  class Crash(Exception): pass
  def crash_after_second(*args, **kwargs):
    written.append(original(*args, **kwargs))
    if len(written) == 2: raise Crash
    return written[-1]
  monkeypatch.setattr(training, "save_snapshot", crash_after_second)
  with pytest.raises(Crash): train(config, tmp_path / "run", progress=False)
  monkeypatch.undo()
  return reference_run, written


@pytest.mark.parametrize("head", [dict(distributional=True, atoms=11, v_min=0.0, v_max=100.0, double_q=True),
                                  dict(quantiles=7, double_q=True), dict(munchausen=0.9)], ids=["c51", "qrdqn", "munchausen"])
def test_rainbow_components_resume_identically(tmp_path, monkeypatch, head):
  """Priorities, noise draws and n-step lookahead all continue exactly across a crash (two envs), with C51's head,
  QR-DQN's and Munchausen's (which also runs the target net at s)."""
  config = CONFIG.replace(n_step=3, prioritized=True, noisy=True, dueling=True, num_envs=2, total_timesteps=2000,
                          **head)
  reference_run, written = crash_after_second_snapshot(config, tmp_path, monkeypatch)
  assert written[-1].name == "step_000000000800"
  resume(tmp_path / "run", progress=False)
  assert_same_run(reference_run, tmp_path / "run")


@pytest.mark.cpu_only  # lagged acting reads host views of the weights (elsewhere a run refuses it)
def test_lagged_acting_resumes_identically_and_differs_only_in_acting(tmp_path, monkeypatch):
  """lagged_acting (each round of gradient steps runs while the loop goes on; actions use θ from before the
  latest round) continues exactly across a crash between rounds, the lagged stats included; and it is another
  run than the default: its actions lag, so its episodes differ."""
  config = CONFIG.replace(lagged_acting=True, total_timesteps=2000, num_envs=2)
  reference_run, _ = crash_after_second_snapshot(config, tmp_path, monkeypatch)
  resume(tmp_path / "run", progress=False)
  assert_same_run(reference_run, tmp_path / "run")
  default = train(config.replace(lagged_acting=False), tmp_path / "default", progress=False).run_dir
  assert deterministic(default / "metrics.csv") != deterministic(reference_run / "metrics.csv")


def test_lagged_acting_without_numpy_acting_is_a_clear_error(tmp_path, monkeypatch):
  """Off the CPU, or with the Nature CNN, acting goes through tinygrad and cannot read a lagged copy: say so."""
  monkeypatch.setattr(DQNAgent, "acts_in_numpy", property(lambda self: False))
  with pytest.raises(UserError, match="lagged_acting needs a network that acts in numpy"):
    train(CONFIG.replace(lagged_acting=True), tmp_path / "run", progress=False)
