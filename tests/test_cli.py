"""The command line, run as a user runs it: a smoke run end to end, and one-line errors with exit code 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinydqn.config import load_preset

TINY = ["--total-timesteps", "300", "--learning-starts", "50", "--train-freq", "4", "--gradient-steps", "1",
        "--batch-size", "16", "--net-arch", "16", "--eval-freq", "150", "--eval-episodes", "2", "--quiet"]


def tinydqn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "tinydqn", *args], capture_output=True, text=True, cwd=cwd,
                        timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert "Traceback" not in proc.stderr
  assert lines[-1].startswith("tinydqn: error: ") and all(f in lines[-1] for f in fragments), proc.stderr
  assert len([line for line in lines if line.startswith("tinydqn: error")]) == 1


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
  run = tmp_path_factory.mktemp("cli") / "run"
  proc = tinydqn("train", "CartPole-v1", "--run-dir", str(run), "--seed", "3", *TINY)
  assert proc.returncode == 0, proc.stderr
  assert "Final greedy evaluation" in proc.stdout and str(run) in proc.stdout
  assert f" on {os.environ['DEV'].split(':')[0].upper()}" in proc.stderr.splitlines()[0]  # the device, said at start
  return run


def test_train_writes_a_complete_run_directory(trained_run):
  config = json.loads((trained_run / "config.json").read_text())
  assert config["env_id"] == "CartPole-v1" and config["seed"] == 3 and config["net_arch"] == [16]
  assert config["learning_rate"] == load_preset("cartpole")["learning_rate"]  # preset chosen by the env id
  metrics = (trained_run / "metrics.csv").read_text().splitlines()
  assert metrics[0].startswith("step,episode,episodic_return,episodic_length,epsilon,loss")
  assert len(metrics) > 5
  evals = (trained_run / "eval.csv").read_text().splitlines()
  assert evals[0].startswith("step,mean_return,std_return") and [row.split(",")[0] for row in evals[1:]] == ["150", "300"]
  assert (trained_run / "checkpoints" / "final.safetensors").exists()
  assert json.loads((trained_run / "summary.json").read_text())["final_eval"]["episodes"] == 2
  device = os.environ["DEV"].split(":")[0].upper()  # the suite's device (conftest: the CPU unless DEV is set)
  assert config["device"] == device and json.loads((trained_run / "summary.json").read_text())["device"] == device


def test_eval_json(trained_run):
  proc = tinydqn("eval", str(trained_run), "--episodes", "3", "--json")
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout)
  assert result["episodes"] == 3 and len(result["returns"]) == 3
  assert result["mean_return"] == pytest.approx(sum(result["returns"]) / 3)
  assert {"std_return", "env_id", "step"} <= set(result)


def test_existing_run_dir_is_refused_and_left_untouched(trained_run):
  before = {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}
  assert_one_line_error(tinydqn("train", "--run-dir", str(trained_run), *TINY), "already exists", "--force")
  assert before == {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}


@pytest.mark.parametrize("args, fragments", [
  (["train", "CartPol-v1"], ["unknown environment", "CartPole-v1"]),
  (["train", "--preset", "cartpol"], ["unknown preset", "cartpole"]),
  (["train", "Pendulum-v1"], ["Box(", "Discrete"]),
  (["train", "--gamma", "1.5"], ["gamma"]),
  (["train", "--batch-size", "-1"], ["batch_size"]),
  (["train", "--batch-size", "64", "--buffer-size", "32"], ["batch_size", "buffer_size"]),
  (["train", "--learning-starts", "500", "--total-timesteps", "500"], ["learning_starts"]),
  (["train", "--net-arch", "64,x"], ["--net-arch"]),
  (["train", "--optimiser", "adam"], ["--optimizer"]),
  (["train", "--loss", "l1"], ["loss"]),
  (["eval", "does/not/exist"], ["not found"]),
  (["eval", "."], ["no checkpoint"]),
  (["eval", "x", "--episodes", "0"], ["--episodes"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragments):
  assert_one_line_error(tinydqn(*args, cwd=tmp_path), *fragments)
  assert not (tmp_path / "runs").exists()  # nothing was created


def test_corrupt_checkpoint_is_named(tmp_path, trained_run):
  run = tmp_path / "copy"
  (run / "checkpoints").mkdir(parents=True)
  for f in (trained_run / "checkpoints").iterdir(): (run / "checkpoints" / f.name).write_bytes(f.read_bytes()[:64])
  assert_one_line_error(tinydqn("eval", str(run)), "cannot read checkpoint", "final.json")


def test_discrete_observations_are_one_hot(tmp_path):
  proc = tinydqn("train", "FrozenLake-v1", "--run-dir", str(tmp_path / "fl"), *TINY)
  assert proc.returncode == 0, proc.stderr
  assert json.loads((tmp_path / "fl" / "checkpoints" / "final.json").read_text())["obs_shape"] == [16]


def test_presets_are_listed():
  proc = tinydqn("presets")
  assert proc.returncode == 0 and "cartpole" in proc.stdout and "CartPole-v1" in proc.stdout
