"""Atari and MinAtar: preprocessing, CNN torsos, life loss and reward clipping in the loop, errors, short runs."""
import json
import subprocess
import sys

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
from tinygrad import Tensor, nn

from tinydqn.atari import life_loss_terminals, stacks_frames
from tinydqn.config import Config, make_config
from tinydqn.conv import MinAtarCNN, NatureCNN, _row_groups, _windows, conv_relu, network_for
from tinydqn.envs import make_env
from tinydqn.errors import UserError
from tinydqn.heads import QHead
from tinydqn.networks import QNetwork
from tinydqn.train import resume, train


def test_nature_cnn_shape_and_uint8_scaling():
  Tensor.manual_seed(0)
  net = QNetwork(NatureCNN((4, 84, 84)), QHead(512, 6))
  frames = np.random.default_rng(0).integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
  q = net(Tensor(frames)).numpy()
  assert q.shape == (2, 6)
  np.testing.assert_allclose(q, net(Tensor(frames.astype(np.float32) / 255)).numpy(), rtol=1e-5, atol=1e-6)
  assert [tuple(c.weight.shape) for c in net.torso.convs] == [(32, 4, 8, 8), (64, 32, 4, 4), (64, 64, 3, 3)]
  assert net.torso.hidden.weight.shape == (512, 64 * 7 * 7)  # [out, in]: over weight_layout.MOST_WEIGHTS


@pytest.mark.parametrize("batch, channels, size, kernel, stride, out_channels", [
  (2, 4, 84, 8, 4, 32), (2, 32, 20, 4, 2, 64), (2, 64, 9, 3, 1, 64),  # the Nature CNN's layers (the first in 2 groups)
  (3, 4, 10, 3, 1, 16)])  # MinAtar's
def test_convolution_as_a_product_equals_tinygrads(batch, channels, size, kernel, stride, out_channels):
  """The patches-times-weights form computes ReLU(conv(x)) and its gradients for x, the weights and the bias."""
  x_values = np.random.default_rng(0).normal(size=(batch, channels, size, size)).astype(np.float32)
  Tensor.manual_seed(0)
  conv = nn.Conv2d(channels, out_channels, kernel, stride=stride)
  results = []
  for as_product in (False, True):
    x, conv.weight.grad, conv.bias.grad = Tensor(x_values).realize(), None, None
    y = conv_relu(x, conv, as_product)
    (y * y).sum().backward()  # a loss that weighs every output differently
    results.append([t.numpy() for t in (y, x.grad, conv.weight.grad, conv.bias.grad)])
  assert results[0][0].max() > 0 and (results[0][0] == 0).any()  # the ReLU is active and cuts
  for stock, product in zip(*results):
    np.testing.assert_allclose(product, stock, rtol=1e-5, atol=1e-5 * np.abs(stock).max())


@pytest.mark.parametrize("size, kernel, stride", [(84, 8, 4), (20, 4, 2), (9, 3, 1), (10, 4, 3), (11, 4, 2)])
def test_windows_from_blocks_equal_unfold_and_its_gradient(size, kernel, stride):
  """Strides that divide the kernel and the image take windows from stride-sized blocks (the others unfold):
  the same windows, and the same gradient back to the image."""
  x_values = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
  results = []
  for windows in (_windows, lambda x, kh, kw, sh, sw: x.unfold(2, kh, sh).unfold(3, kw, sw)):
    x = Tensor(x_values).realize()
    w = windows(x, kernel, kernel, stride, stride)
    (w * Tensor.arange(w.numel()).reshape(w.shape).float()).sum().backward()  # each copy weighted differently
    results.append((w.numpy(), x.grad.numpy()))
  for ours, unfolded in zip(*results): np.testing.assert_array_equal(ours, unfolded)


def test_weight_gradients_are_summed_in_groups_of_whole_tiles():
  assert [_row_groups(rows) for rows in (12800, 2592, 1568, 800, 400, 81)] == [25, 6, 4, 2, 1, 1]


def test_minatar_cnn_takes_channels_last_booleans_and_noisy_layers_in_order():
  Tensor.manual_seed(0)
  net = QNetwork(MinAtarCNN((10, 10, 4), sigma0=0.5), QHead(128, 3, dueling=True, sigma0=0.5))
  assert [layer.shape for layer in net.noisy_layers()] == [(16 * 8 * 8, 128), (128, 3), (128, 1)]
  obs = np.random.default_rng(0).random((5, 10, 10, 4)) < 0.3
  assert net(Tensor(obs)).numpy().shape == (5, 3)


@pytest.mark.cpu_only
@pytest.mark.parametrize("heads", [dict(), dict(noisy=True, dueling=True, distributional=True, atoms=5),
                                   dict(noisy=True, dueling=True, quantiles=4)])
def test_minatar_numpy_acting_equals_tinygrad_after_training(heads):
  """MinAtar's CNN acts in numpy on views of the live weights; it must match the tinygrad forward."""
  from tinydqn.agent import DQNAgent
  from tinydqn.buffers import ReplayBuffer
  from tinydqn.config import make_config
  from tinydqn.networks import empty_noise, factorized_noise
  config = make_config("MinAtar/Breakout-v1", batch_size=8, learning_rate=1e-2, **heads)
  rng, shape = np.random.default_rng(0), (10, 10, 4)
  agents = []
  for host_views in (True, False):
    Tensor.manual_seed(0)
    agents.append(DQNAgent(config, shape, np.dtype(np.bool_), 3, host_views=host_views))
  fast, slow = agents
  assert fast._numpy_q is not None and slow._numpy_q is None
  buf = ReplayBuffer(64, shape, np.bool_, num_envs=8)
  for _ in range(8):
    buf.add(rng.random((8, *shape)) < 0.2, rng.integers(3, size=8), rng.normal(size=8), rng.random((8, *shape)) < 0.2,
            np.zeros(8), np.zeros(8))
  for _ in range(3):  # the views must follow the optimizer's in-place writes
    buf.sample_into(fast.batch, rng)
    fast.update(rng)
  slow.load_state_dict({k: v.numpy() for k, v in fast.state_dict().items()})
  obs = rng.random((6, *shape)) < 0.2
  np.testing.assert_allclose(fast.q_values(obs), slow.q_values(obs), rtol=1e-4, atol=1e-5)
  if config.noisy:
    noise = empty_noise(fast._online_noise_shapes)
    factorized_noise(rng, fast._online_noise_shapes, noise)
    np.testing.assert_allclose(fast.q_values(obs, noise), slow.q_values(obs, noise), rtol=1e-4, atol=1e-5)


def test_network_auto_picks_by_observation_shape():
  assert network_for("auto", (4, 84, 84)) == "nature_cnn"
  assert network_for("auto", (10, 10, 6)) == "minatar_cnn"
  assert network_for("auto", (4,)) == "mlp"
  with pytest.raises(UserError, match="image observations"): network_for("nature_cnn", (4,))
  with pytest.raises(UserError, match="network must be"): Config(network="resnet")


def test_presets_follow_the_env_id():
  assert make_config("ALE/Breakout-v5").env_id == "ALE/Breakout-v5"
  assert make_config("PongNoFrameskip-v4").network == "nature_cnn"
  config = make_config("MinAtar/SpaceInvaders-v1")
  assert config.env_id == "MinAtar/SpaceInvaders-v1" and config.network == "minatar_cnn"


def test_life_loss_terminals():
  term = np.array([False, False, True])
  stored, lives = life_loss_terminals(term, {"lives": np.array([3, 2, 5])}, np.array([3, 3, 1]))
  assert stored.tolist() == [False, True, True] and lives.tolist() == [3, 2, 5]  # env 2: game over, then a new game
  assert life_loss_terminals(term, {}, None)[0] is term


class ScoreAndLives(gym.Env):
  """Reward 5 per step, a life lost every 4 steps, game over after 3 lives (12 steps)."""
  observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
  action_space = gym.spaces.Discrete(2)

  def __init__(self, render_mode=None): self.t = 0

  def reset(self, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    return np.zeros(2, np.float32), {"lives": 3}

  def step(self, action):
    self.t += 1
    return np.full(2, self.t / 12, np.float32), 5.0, self.t == 12, False, {"lives": 3 - self.t // 4}


def test_loop_stores_clipped_rewards_and_life_losses_but_logs_the_score(tmp_path, monkeypatch):
  gym.register("tinydqn-test/ScoreAndLives-v0", ScoreAndLives)
  seen = []
  import tinydqn.buffers
  original = tinydqn.buffers.ReplayBuffer.add
  monkeypatch.setattr(tinydqn.buffers.ReplayBuffer, "add", lambda self, *a: (seen.append(a), original(self, *a))[1])
  config = Config(env_id="tinydqn-test/ScoreAndLives-v0", total_timesteps=36, learning_starts=20, batch_size=4,
                  buffer_size=64, net_arch=(8,), eval_freq=0, eval_episodes=1, checkpoint_freq=0,
                  clip_rewards=True, terminal_on_life_loss=True)
  train(config, run_dir=tmp_path / "run", progress=False)
  assert all(a[2].tolist() == [1.0] for a in seen)
  assert [t for t, a in enumerate(seen, 1) if a[4][0]] == [4, 8, 12, 16, 20, 24, 28, 32, 36]  # each life, each game
  assert [a[4][0] for a in seen].count(True) == 9 and not any(a[5][0] for a in seen)
  rows = (tmp_path / "run/metrics.csv").read_text().splitlines()[1:]
  assert [float(r.split(",")[2]) for r in rows] == [60.0] * 3  # whole games, real score


def test_atari_preprocessing_and_sticky_actions():
  pytest.importorskip("ale_py")
  env = make_env("ALE/Pong-v5")
  obs, info = env.reset(seed=0)
  assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and (obs == obs[-1]).all()  # padded with the 1st frame
  assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0 and env.unwrapped._frameskip == 1
  assert make_env("PongNoFrameskip-v4", sticky_actions=0.25).unwrapped.ale.getFloat("repeat_action_probability") == 0.25
  assert stacks_frames(env) and not stacks_frames(gym.make("CartPole-v1"))


def test_a_lost_life_does_not_reset_the_game_and_envs_survive_pickling():
  pytest.importorskip("ale_py")
  env = make_env("ALE/Breakout-v5", sticky_actions=0.25)
  obs, info = env.reset(seed=1)
  rng = np.random.default_rng(0)
  lives, steps = info["lives"], 0
  while True:
    obs, _, terminated, truncated, info = env.step(int(rng.integers(4)))
    steps += 1
    if info["lives"] < lives: break
  assert not (terminated or truncated) and info["lives"] == lives - 1 and info["episode_frame_number"] > 4 * steps
  copy = cloudpickle.loads(cloudpickle.dumps(env))  # snapshots pickle the envs
  for a in rng.integers(4, size=100):
    np.testing.assert_array_equal(env.step(int(a))[0], copy.step(int(a))[0])
  np.testing.assert_array_equal(env.reset()[0], copy.reset()[0])  # no-op starts: the same draws


def test_missing_packages_and_roms_are_one_line_errors(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "ale_py", None)
  monkeypatch.setitem(sys.modules, "minatar.gym", None)
  with pytest.raises(UserError, match=r"pip install 'tinydqn\[atari\]'"): make_env("ALE/Pong-v5")
  with pytest.raises(UserError, match=r"pip install 'tinydqn\[minatar\]'"): make_env("MinAtar/Breakout-v1")
  monkeypatch.undo()
  pytest.importorskip("ale_py")
  monkeypatch.setenv("ALE_ROMS_DIR", str(tmp_path))  # a ROM directory without the game
  with pytest.raises(UserError, match="cannot load its ROM") as e: make_env("ALE/Pong-v5")
  assert "\n" not in str(e.value) and "pong.bin" in str(e.value)
  with pytest.raises(UserError, match="unknown environment"): make_env("ALE/Pongg-v5")


def test_cli_says_how_to_get_the_rom(tmp_path):
  pytest.importorskip("ale_py")
  import os
  out = subprocess.run([sys.executable, "-m", "tinydqn", "train", "ALE/Pong-v5", "--run-dir", str(tmp_path / "r")],
                       capture_output=True, text=True, env={**os.environ, "ALE_ROMS_DIR": str(tmp_path)})
  lines = [line for line in out.stderr.strip().splitlines() if not line.startswith("tinydqn: training")]
  assert out.returncode == 2 and len(lines) == 1 and "ROM" in lines[0], out.stderr


def test_minatar_run_resumes_exactly(tmp_path):
  pytest.importorskip("minatar")
  config = make_config("MinAtar/Breakout-v1", total_timesteps=300, learning_starts=100, buffer_size=200,
                       eval_freq=150, eval_episodes=1, checkpoint_freq=150, train_freq=4)
  train(config, run_dir=tmp_path / "full", progress=False)
  train(config, run_dir=tmp_path / "cut", progress=False)
  (tmp_path / "cut/summary.json").unlink()  # as if it had been killed after the step-150 snapshot
  (tmp_path / "cut/checkpoints/final.safetensors").unlink()
  for old in (tmp_path / "cut/checkpoints").glob("step_*"):
    if not old.name.endswith("150"): __import__("shutil").rmtree(old)
  resume(tmp_path / "cut", progress=False)
  for name in ("final.safetensors", "best.safetensors"):  # pixel runs keep their best evaluated policy too
    assert (tmp_path / "full/checkpoints" / name).read_bytes() == (tmp_path / "cut/checkpoints" / name).read_bytes()


def test_ale_run_end_to_end_and_resumed_exactly(tmp_path):
  pytest.importorskip("ale_py")
  config = make_config("ALE/Pong-v5", total_timesteps=220, learning_starts=180, buffer_size=100, eval_freq=0,
                       eval_episodes=1, checkpoint_freq=200, train_freq=8, target_update_interval=200)
  result = train(config, run_dir=tmp_path / "run", progress=False)
  assert isinstance(result.agent.online.torso, NatureCNN)
  assert json.loads((tmp_path / "run/summary.json").read_text())["total_timesteps"] == 220
  final = (tmp_path / "run/checkpoints/final.safetensors").read_bytes()
  snap = next((tmp_path / "run/checkpoints").glob("step_*"))
  with np.load(snap / "replay.npz") as z: assert z["frames"].shape == (100, 84, 84) and "obs" not in z.files
  (tmp_path / "run/summary.json").unlink()  # as if killed after the step-200 snapshot
  resume(tmp_path / "run", progress=False)
  assert (tmp_path / "run/checkpoints/final.safetensors").read_bytes() == final
