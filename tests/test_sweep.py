"""Sweeps: specs checked before anything starts, and a tiny Ray sweep on a local cluster that skips finished trials
and resumes interrupted ones when run again."""
import csv
import json
import sys
import types

import pytest

import tinydqn.train as train_module
from tinydqn.cli import main
from tinydqn.sweep import CONFIG_FIELDS, SPEC_FIELDS, load_spec, make_trials, parse_seeds, run_sweep

pytestmark = pytest.mark.cpu_stage  # what these tests check does not depend on the device

TINY = """env_id = "CartPole-v1"
seeds = [0, 1]
[config]
total_timesteps = 300
learning_starts = 50
train_freq = 4
gradient_steps = 1
batch_size = 16
net_arch = [16]
eval_freq = 150
eval_episodes = 2
checkpoint_freq = 100
"""


def test_seeds():
  assert parse_seeds("0-2,5") == [0, 1, 2, 5] and parse_seeds([3, 1]) == [3, 1] and parse_seeds(4) == [4]


def test_every_combination_of_grid_and_seeds(tmp_path):
  (tmp_path / "s.toml").write_text(TINY + "[grid]\nlearning_rate = [1e-3, 5e-4]\nnet_arch = [[16], [8, 8]]\n")
  trials = make_trials(load_spec(tmp_path / "s.toml"))
  assert len(trials) == 8 and len({t.name for t in trials}) == 8
  assert trials[0].name == "CartPole-v1__learning_rate=0.001__net_arch=16__s0"
  assert trials[-1].config.net_arch == (8, 8) and trials[-1].config.seed == 1 and trials[-1].config.learning_rate == 5e-4
  assert all(t.config.total_timesteps == 300 for t in trials)
  assert trials[0].config.double_q  # the env's preset applies under the spec's values, as in `tinydqn train`


def one_line_error(capsys, argv) -> str:
  assert main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("tinydqn: error: "), err
  return err[0]


@pytest.mark.parametrize("extra, fragments", [
  ("learning_rat = 1\n", ["unknown sweep field", "learning_rat", *SPEC_FIELDS]),
  ("[grid]\nlr = [1, 2]\n", ["unknown config field", "[grid]: lr", *CONFIG_FIELDS]),
  ("[grid]\nseed = [1, 2]\n", ["seed", "top-level `seeds`"]),
  ("[grid]\ngamma = 0.9\n", ["gamma must be a non-empty list"]),
  ("[grid]\nlearning_rate = [1e-3, -1.0]\n", ["trial CartPole-v1__learning_rate=-1.0__s0", "learning_rate must be > 0"]),
])
def test_bad_specs_fail_before_anything_starts(tmp_path, capsys, extra, fragments):
  spec = tmp_path / "s.toml"
  spec.write_text(TINY.replace("[config]", extra + "[config]") if not extra.startswith("[") else TINY + extra)
  line = one_line_error(capsys, ["sweep", str(spec), "--out", str(tmp_path / "out")])
  assert all(f in line for f in fragments), line
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seeds", ["3-1", "a", "-1", "0,0", ""])
def test_bad_seeds(tmp_path, capsys, seeds):
  (tmp_path / "s.toml").write_text(TINY)
  assert "bad seeds" in one_line_error(capsys, ["sweep", str(tmp_path / "s.toml"), "--seeds", seeds,
                                                "--out", str(tmp_path / "out")])


def test_flags_alone_make_a_sweep(capsys):
  assert "bad seeds" in one_line_error(capsys, ["sweep", "--seeds", "x"])
  assert "--grid expects FIELD=VALUE" in one_line_error(capsys, ["sweep", "--grid", "gamma"])
  assert "[config]: gama" in one_line_error(capsys, ["sweep", "--set", "gama=0.9"])


def test_missing_ray_names_the_extra(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(__import__("sys").modules, "ray", None)
  (tmp_path / "s.toml").write_text(TINY)
  assert "pip install 'tinydqn[ray]'" in one_line_error(capsys, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")])
  assert not (tmp_path / "o").exists()


def test_ray_sweep_runs_skips_and_resumes(tmp_path, capsys, monkeypatch):
  pytest.importorskip("ray")
  (tmp_path / "s.toml").write_text(TINY)
  out = tmp_path / "out"
  # Trial s1 was interrupted: it died at its second snapshot (step 200), with rows logged after the first.
  s1 = make_trials(load_spec(tmp_path / "s.toml"))[1]
  original = train_module.save_snapshot
  def die_at_second(*args, **kwargs):
    if args[1] >= 200: raise RuntimeError("killed")
    return original(*args, **kwargs)
  monkeypatch.setattr(train_module, "save_snapshot", die_at_second)
  with pytest.raises(RuntimeError): train_module.train(s1.config, out / s1.name, progress=False)
  monkeypatch.setattr(train_module, "save_snapshot", original)
  kept = [row for row in (out / s1.name / "metrics.csv").read_text().splitlines()[1:] if int(row.split(",")[0]) <= 100]
  assert kept and (out / s1.name / "checkpoints" / "step_000000000100").is_dir()

  assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out)]) == 0
  assert "2 trials" in capsys.readouterr().out
  rows = list(csv.DictReader(open(out / "results.csv")))
  assert [r["trial"] for r in rows] == ["CartPole-v1__s0", "CartPole-v1__s1"] and {r["status"] for r in rows} == {"done"}
  for r in rows:
    summary = json.loads((out / r["trial"] / "summary.json").read_text())
    assert float(r["final_mean_return"]) == pytest.approx(summary["final_eval"]["mean_return"]) and r["steps"] == "300"
  # s1 continued from its snapshot: the rows up to it are the interrupted run's own (wall-clock columns included)
  assert (out / s1.name / "metrics.csv").read_text().splitlines()[1:len(kept) + 1] == kept
  md = (out / "results.md").read_text()
  assert "| CartPole-v1 | 2/2 |" in md and md.count("| done |") == 2
  assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

  before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}  # trial files
  assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(out)]) == 0
  assert "2 finished already, 0 to run" in capsys.readouterr().out
  assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}  # trial files


@pytest.mark.parametrize("device, hcq2, expected", [("CPU", None, {"DEV": "CPU", "HCQ2": "1"}),
                                                    ("CPU", "0", {"DEV": "CPU", "HCQ2": "0"}), ("CUDA", None, {"DEV": "CUDA"})])
def test_workers_train_with_the_levers_tinydqn_train_sets(tmp_path, monkeypatch, device, hcq2, expected):
  """A Ray worker imports tinygrad itself: HCQ2 for the CPU must reach it through the worker's environment."""
  class Started(Exception): pass
  seen = {}
  def init(**kwargs):
    seen.update(kwargs)
    raise Started
  monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(init=init))
  if hcq2 is None: monkeypatch.delenv("HCQ2", raising=False)
  else: monkeypatch.setenv("HCQ2", hcq2)
  (tmp_path / "s.toml").write_text(TINY)
  with pytest.raises(Started): run_sweep(make_trials(load_spec(tmp_path / "s.toml")), tmp_path / "out", device=device)
  assert seen["runtime_env"]["env_vars"] == expected


def test_a_trial_folder_with_another_config_is_refused(tmp_path, capsys):
  (tmp_path / "s.toml").write_text(TINY)
  trial = make_trials(load_spec(tmp_path / "s.toml"))[0]
  (tmp_path / "out" / trial.name).mkdir(parents=True)
  (tmp_path / "out" / trial.name / "config.json").write_text(json.dumps(trial.config.replace(gamma=0.9).to_dict()))
  line = one_line_error(capsys, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")])
  assert "another config" in line and "gamma: 0.9 -> 0.99" in line
  saved = trial.config.to_dict()
  del saved["quantiles"]  # a field added after the trial ran: its default is what the trial ran with
  (tmp_path / "out" / trial.name / "config.json").write_text(json.dumps(saved))
  from tinydqn.rundir import check_same_config
  check_same_config(tmp_path / "out" / trial.name, trial.config)


def test_a_damaged_trial_is_kept_and_reported_not_restarted(tmp_path):
  from tinydqn.config import make_config
  from tinydqn.errors import UserError
  from tinydqn.sweep import run_trial
  config = make_config("CartPole-v1", total_timesteps=300, learning_starts=50, net_arch=(8,), eval_freq=0,
                       eval_episodes=1, checkpoint_freq=100)
  trial = tmp_path / "trial"
  (trial / "checkpoints" / "step_000000000100").mkdir(parents=True)  # a snapshot without its manifest: damaged
  (trial / "config.json").write_text(json.dumps(config.to_dict()))
  with pytest.raises(UserError, match="no usable snapshot"): run_trial(config.to_dict(), str(trial))
  assert (trial / "checkpoints" / "step_000000000100").is_dir() and not (trial / "summary.json").exists()
  run_trial(config.to_dict(), str(tmp_path / "new"))  # a new trial still starts
  assert (tmp_path / "new" / "summary.json").exists()
