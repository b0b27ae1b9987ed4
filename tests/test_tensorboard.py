"""TensorBoard event files: CleanRL/SB3 tag names, the values of the CSV rows, and no doubled steps after a resume."""
import csv
import struct
from pathlib import Path

import pytest

pytest.importorskip("tensorboardX")
from tensorboardX.proto.event_pb2 import Event, SessionLog  # noqa: E402

import tinydqn.train as train_module  # noqa: E402
from tinydqn.config import make_config  # noqa: E402
from tinydqn.train import resume, train  # noqa: E402

pytestmark = pytest.mark.cpu_stage  # what these tests check does not depend on the device

CONFIG = make_config("CartPole-v1", seed=2, total_timesteps=300, learning_starts=50, train_freq=4, gradient_steps=1,
                     batch_size=16, net_arch=(16,), eval_freq=150, eval_episodes=2, checkpoint_freq=100)


def read_events(path: Path) -> list[Event]:
  """TFRecord framing: u64 length, u32 crc, payload, u32 crc."""
  data, events, i = path.read_bytes(), [], 0
  while i < len(data):
    (n,) = struct.unpack("<Q", data[i:i + 8])
    events.append(Event.FromString(data[i + 12:i + 12 + n]))
    i += 12 + n + 4
  return events


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
  """What TensorBoard shows: files in creation order, and a SessionLog START at step s hides earlier events
  with step >= s (tensorboardX's purge_step)."""
  out: dict[str, list[tuple[int, float]]] = {}
  for f in sorted((run / "tb").glob("events.out.tfevents.*")):
    for e in read_events(f):
      if e.HasField("session_log") and e.session_log.status == SessionLog.START:
        out = {tag: [(s, v) for s, v in pts if s < e.step] for tag, pts in out.items()}
      for v in e.summary.value: out.setdefault(v.tag, []).append((e.step, v.simple_value))
  return out


def rows(path: Path) -> list[dict]:
  with open(path) as f: return list(csv.DictReader(f))


def assert_events_match_csv(run: Path) -> None:
  tb, episodes, evals = scalars(run), rows(run / "metrics.csv"), rows(run / "eval.csv")
  for tag, column in [("charts/episodic_return", "episodic_return"), ("charts/episodic_length", "episodic_length"),
                      ("charts/epsilon", "epsilon"), ("charts/SPS", "sps")]:
    assert [s for s, _ in tb[tag]] == [int(r["step"]) for r in episodes], tag
    assert [v for _, v in tb[tag]] == pytest.approx([float(r[column]) for r in episodes], rel=1e-5), tag
  learned = [r for r in episodes if r["loss"] != "nan"]  # no loss before the first gradient step
  assert learned and [v for _, v in tb["losses/td_loss"]] == pytest.approx([float(r["loss"]) for r in learned], rel=1e-5)
  assert [v for _, v in tb["losses/q_values"]] == pytest.approx([float(r["q_mean"]) for r in learned], rel=1e-5)
  assert tb["eval/mean_return"] == [(int(r["step"]), pytest.approx(float(r["mean_return"]))) for r in evals]


def test_events_carry_the_logged_values(tmp_path):
  run = train(CONFIG, tmp_path / "run", progress=False).run_dir
  assert [s for s, _ in scalars(run)["eval/mean_return"]] == [150, 300]
  assert_events_match_csv(run)


def test_resume_hides_the_events_logged_after_the_snapshot(tmp_path, monkeypatch):
  original, calls = train_module.save_snapshot, []
  def die_at_second_snapshot(*args, **kwargs):  # the run dies at step 200, having logged rows after snapshot 100
    calls.append(args[1])
    if len(calls) == 2: raise RuntimeError("killed")
    return original(*args, **kwargs)
  monkeypatch.setattr(train_module, "save_snapshot", die_at_second_snapshot)
  with pytest.raises(RuntimeError): train(CONFIG, tmp_path / "run", progress=False)
  monkeypatch.setattr(train_module, "save_snapshot", original)
  before = scalars(tmp_path / "run")["charts/episodic_return"]
  assert max(s for s, _ in before) > 100  # there is something to hide
  resume(tmp_path / "run", progress=False)
  assert len(list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))) == 2
  assert_events_match_csv(tmp_path / "run")


def test_force_removes_the_old_runs_events(tmp_path):
  config = CONFIG.replace(total_timesteps=100, eval_freq=0, stop_at_return=None)
  train(config, tmp_path / "run", progress=False)
  train(config.replace(seed=3), tmp_path / "run", force=True, progress=False)
  assert len(list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))) == 1
  assert_events_match_csv(tmp_path / "run")


def test_switched_off_by_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("TINYDQN_TENSORBOARD", "0")
  run = train(CONFIG.replace(total_timesteps=100, eval_freq=0, stop_at_return=None), tmp_path / "run", progress=False).run_dir
  assert not (run / "tb").exists()
