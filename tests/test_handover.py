"""What a run hands over: its best evaluated policy kept as checkpoints/best.*, and a stop once it is solved."""
import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tinydqn.checkpoint import load_checkpoint
from tinydqn.cli import _report
from tinydqn.config import make_config
from tinydqn.envs import make_env
from tinydqn.errors import UserError
from tinydqn.evaluate import evaluate
from tinydqn.train import train

# What these check does not depend on the device (CI runs the suite again on CL without them).
pytestmark = pytest.mark.cpu_stage

# Small enough for seconds, long enough that the greedy return moves between evaluations.
CONFIG = make_config("CartPole-v1", seed=2, total_timesteps=3000, learning_starts=200, train_freq=4, gradient_steps=1,
                     batch_size=32, net_arch=(32,), target_update_interval=100, learning_rate=2e-3,
                     learning_rate_schedule="constant", eval_freq=250, eval_episodes=3, checkpoint_freq=0,
                     stop_at_return=None, stop_eval_episodes=0)


def eval_rows(run: Path) -> list[dict]:
  with open(run / "eval.csv") as f: return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def fixed_budget(tmp_path_factory) -> Path:
  return train(CONFIG, tmp_path_factory.mktemp("budget") / "run", progress=False).run_dir


def test_best_checkpoint_holds_the_weights_of_the_best_evaluation(fixed_budget):
  rows = eval_rows(fixed_budget)
  means = [float(r["mean_return"]) for r in rows]
  best_row = rows[int(np.argmax(means))]  # argmax: the first of equal means, as a strict "beats the best so far"
  assert len(set(means)) > 2 and int(best_row["step"]) < CONFIG.total_timesteps  # the best is not simply the last
  ckpt = load_checkpoint(fixed_budget, best=True)
  assert ckpt.step == int(best_row["step"]) == ckpt.eval["step"] and ckpt.eval["mean_return"] == pytest.approx(max(means))
  summary = json.loads((fixed_budget / "summary.json").read_text())
  assert summary["best_eval"] == ckpt.eval and summary["stopped_early"] is None
  # playing it again on the evaluation's own episodes gives that evaluation's returns: these are its weights
  replayed = evaluate(ckpt.make_agent(), make_env("CartPole-v1"), CONFIG.eval_episodes, CONFIG.eval_seed)
  assert replayed.mean_return == pytest.approx(float(best_row["mean_return"]))
  assert load_checkpoint(fixed_budget).step == CONFIG.total_timesteps  # the final checkpoint is still the default


def test_stop_at_return_ends_the_run_at_the_first_evaluation_that_reaches_it(fixed_budget, tmp_path):
  means = [float(r["mean_return"]) for r in eval_rows(fixed_budget)]
  threshold = max(means[1:])  # reached after the first evaluation, so the stop is not at the first chance
  stop_index = next(i for i, m in enumerate(means) if m >= threshold)
  stop_step = (stop_index + 1) * CONFIG.eval_freq
  assert stop_step < CONFIG.total_timesteps
  result = train(CONFIG.replace(stop_at_return=threshold), tmp_path / "run", progress=False)
  assert result.steps == stop_step and result.stopped_early["step"] == stop_step
  summary = json.loads((tmp_path / "run/summary.json").read_text())
  assert summary["stopped_early"]["reason"] == "stop_at_return" and summary["total_timesteps"] == stop_step
  assert summary["final_eval"]["mean_return"] == pytest.approx(means[stop_index])
  # the same run up to the stop, and the CSVs end there
  with open(fixed_budget / "metrics.csv") as f: budget_rows = [r for r in csv.DictReader(f) if int(r["step"]) <= stop_step]
  with open(tmp_path / "run/metrics.csv") as f: stopped_rows = list(csv.DictReader(f))
  drop = lambda rows: [{k: v for k, v in r.items() if k not in ("time_s", "sps")} for r in rows]  # noqa: E731
  assert drop(stopped_rows) == drop(budget_rows)
  assert [r["step"] for r in eval_rows(tmp_path / "run")] == [r["step"] for r in eval_rows(fixed_budget)][:stop_index + 1]
  # the final checkpoint is the policy that reached the threshold, which is also the best
  assert load_checkpoint(tmp_path / "run").step == stop_step
  final, best = load_checkpoint(tmp_path / "run"), load_checkpoint(tmp_path / "run", best=True)
  for k in final.arrays: np.testing.assert_array_equal(final.arrays[k], best.arrays[k])


def test_the_final_message_says_what_was_handed_over(capsys):
  ev = SimpleNamespace(returns=(100.0, 120.0), mean_return=110.0, std_return=10.0)
  base = dict(steps=50_000, seconds=10.0, steps_per_second=5000.0, agent=SimpleNamespace(device="CPU"),
              run_dir=Path("runs/x"), final_eval=ev)
  _report(SimpleNamespace(**base, best_eval={"step": 30_000, "mean_return": 500.0, "std_return": 0.0, "episodes": 10},
                          stopped_early=None))
  out = capsys.readouterr().out
  assert "110.0" in out and "500.0 ± 0.0 at step 30,000" in out and "tinydqn eval runs/x --best" in out
  _report(SimpleNamespace(**base, best_eval={"step": 50_000, "mean_return": 110.0, "std_return": 10.0, "episodes": 2},
                          stopped_early=None))
  assert "--best" not in capsys.readouterr().out  # the final policy is the best: nothing else to offer
  stop = {"step": 27_500, "mean_return": 500.0, "std_return": 0.0, "episodes": 10, "stop_at_return": 475.0}
  _report(SimpleNamespace(**base, best_eval=stop, stopped_early=stop))
  assert "Solved at step 27,500: greedy 500.0 ± 0.0 over 10 episodes" in capsys.readouterr().out


def test_none_turns_off_the_presets_stop():
  assert make_config("CartPole-v1").stop_at_return == 475.0
  from tinydqn.cli import build_parser
  args = build_parser().parse_args(["train", "--stop-at-return", "none"])
  assert args.stop_at_return is None and make_config("CartPole-v1", stop_at_return=args.stop_at_return).stop_at_return is None


def test_stop_without_evaluations_is_refused_unless_it_came_from_the_preset():
  with pytest.raises(UserError, match="eval_freq"): make_config("CartPole-v1", eval_freq=0, stop_at_return=400)
  assert make_config("CartPole-v1", eval_freq=0).stop_at_return is None  # the preset's stop goes with its evaluations


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "tinydqn", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert lines[-1].startswith("tinydqn: error: ") and all(f in lines[-1] for f in fragments), proc.stderr


def test_bad_input_about_the_best_and_the_stop(tmp_path, fixed_budget):
  assert_one_line_error(cli("train", "--stop-at-return", "400", "--eval-freq", "0", cwd=tmp_path), "eval_freq")
  assert_one_line_error(cli("train", "--stop-at-return", "lots", cwd=tmp_path), "--stop-at-return")
  assert not (tmp_path / "runs").exists()  # nothing written
  no_evals = train(CONFIG.replace(total_timesteps=300, eval_freq=0), tmp_path / "no_evals", progress=False).run_dir
  assert_one_line_error(cli("eval", str(no_evals), "--best", cwd=tmp_path), "no best checkpoint", "no periodic evaluation")
  assert_one_line_error(cli("eval", str(fixed_budget / "checkpoints/final.json"), "--best", cwd=tmp_path), "run directory")
  damaged = tmp_path / "damaged"
  (damaged / "checkpoints").mkdir(parents=True)
  for f in (fixed_budget / "checkpoints").glob("best.*"): (damaged / "checkpoints" / f.name).write_bytes(f.read_bytes())
  weights = damaged / "checkpoints/best.safetensors"
  weights.write_bytes(weights.read_bytes()[:100])
  assert_one_line_error(cli("eval", str(damaged), "--best", cwd=tmp_path), "cannot read checkpoint", "best.json")


def test_a_stop_is_decided_on_stop_eval_episodes(fixed_budget, tmp_path):
  """A periodic evaluation that reaches the threshold is extended to stop_eval_episodes (seeds on from its own);
  the run stops only if the mean over all of them reaches the threshold too."""
  rows = eval_rows(fixed_budget)
  means = [float(r["mean_return"]) for r in rows]
  threshold, episodes = max(means[1:]), 12
  step = int(rows[next(i for i, m in enumerate(means) if m >= threshold)]["step"])
  best = load_checkpoint(fixed_budget, best=True)
  assert best.step == step  # the candidate's weights (the first evaluation reaching the best mean)
  extra = evaluate(best.make_agent(), make_env("CartPole-v1"), episodes - CONFIG.eval_episodes,
                   CONFIG.eval_seed + CONFIG.eval_episodes)
  evidence = (sum(extra.returns) + CONFIG.eval_episodes * means[step // CONFIG.eval_freq - 1]) / episodes
  result = train(CONFIG.replace(stop_at_return=threshold, stop_eval_episodes=episodes), tmp_path / "run", progress=False)
  if evidence >= threshold:
    assert result.steps == step and result.stopped_early["episodes"] == episodes
    assert result.stopped_early["mean_return"] == pytest.approx(evidence)
  else:  # not kept over the longer evaluation: the run goes on past that step
    assert result.steps > step and (result.stopped_early is None or result.stopped_early["step"] > step)
