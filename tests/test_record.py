"""Videos of greedy episodes: one frame per step plus each episode's first, headless, in mp4 and GIF."""
import pytest

from tinydqn.checkpoint import load_checkpoint
from tinydqn.cli import main
from tinydqn.config import make_config
from tinydqn.envs import make_env
from tinydqn.evaluate import evaluate
from tinydqn.train import train

imageio = pytest.importorskip("imageio")
pytest.importorskip("imageio_ffmpeg")
PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  config = make_config("CartPole-v1", seed=4, total_timesteps=300, learning_starts=50, train_freq=4, gradient_steps=1,
                       batch_size=16, net_arch=(16,), eval_freq=0, eval_episodes=2, checkpoint_freq=0)
  return train(config, tmp_path_factory.mktemp("rec") / "run", progress=False).run_dir


def expected_frames(run, episodes: int, seed: int) -> int:
  lengths = evaluate(load_checkpoint(run).make_agent(), make_env("CartPole-v1"), episodes, seed).lengths
  return sum(lengths) + episodes


def test_mp4_has_a_frame_per_step(run, tmp_path, capsys, monkeypatch):
  monkeypatch.delenv("DISPLAY", raising=False)
  out = tmp_path / "run.mp4"
  assert main(["record", str(run), "-o", str(out), "--episodes", "2", "--seed", "7"]) == 0
  frames = expected_frames(run, 2, 7)
  assert f"{frames} frames" in capsys.readouterr().out
  reader = imageio.get_reader(out)
  assert reader.count_frames() == frames
  assert reader.get_data(0).shape == (400, 600, 3)  # even sizes: not rescaled
  assert reader.get_meta_data()["fps"] == 50  # CartPole's render_fps


def test_gif_lasts_a_frame_per_step(run, tmp_path):
  out = tmp_path / "run.gif"
  assert main(["record", str(run / "checkpoints" / "final.json"), "-o", str(out), "--fps", "25"]) == 0
  frames = expected_frames(run, 1, 10_000)  # default seed: the run's eval_seed
  with PIL.open(out) as gif:  # Pillow merges identical consecutive frames into one longer frame: count time
    durations = [gif.seek(i) or gif.info["duration"] for i in range(gif.n_frames)]
  assert sum(durations) == 40 * frames and gif.size == (600, 400)


@pytest.mark.parametrize("args, fragment", [(["-o", "{tmp}/x.avi"], "must end in .mp4 or .gif"), (["--episodes", "0"], "--episodes"),
                                            (["--fps", "0"], "--fps")])
def test_bad_input_is_one_line(run, tmp_path, capsys, args, fragment):
  assert main(["record", str(run), *[a.format(tmp=tmp_path) for a in args]]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and fragment in err[0]
  assert not (tmp_path / "x.avi").exists()


def test_video_uses_the_runs_sticky_actions_as_eval_does(tmp_path, monkeypatch):
  """With sticky actions (MinAtar's 0.1, sticky Atari) a video made without them shows other episodes than eval's."""
  import numpy as np
  import tinydqn.record as recording
  from tinydqn.agent import DQNAgent
  from tinydqn.checkpoint import save_checkpoint
  config = make_config("CartPole-v1", sticky_actions=0.25, net_arch=(8,))
  save_checkpoint(DQNAgent(config, (4,), np.dtype(np.float32), 2), 0, (4,), np.float32, tmp_path / "ckpt")
  made = []
  def spy(*args, **kwargs):
    made.append(kwargs.get("sticky_actions", 0.0))
    return make_env(*args, **kwargs)
  monkeypatch.setattr(recording, "make_env", spy)
  assert main(["record", str(tmp_path / "ckpt.json"), "-o", str(tmp_path / "v.gif")]) == 0
  assert made == [0.25]
