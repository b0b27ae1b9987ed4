"""QR-DQN (Dabney et al. 2018): the quantile levels and the quantile Huber loss by hand, the jitted update against
numpy, numpy acting against tinygrad, and its config. (Exact resume: tests/test_resume.py; MinAtar's CNN:
tests/test_atari.py.)"""
import numpy as np
import pytest
from tinygrad import Tensor

from conftest import choosers_differ, filled_buffer, lag_target, make_agent
from tinydqn.config import make_config
from tinydqn.conv import NatureCNN
from tinydqn.errors import UserError
from tinydqn.heads import QuantileHead, quantile_huber_loss, quantile_midpoints
from tinydqn.networks import QNetwork, empty_noise, factorized_noise


def test_quantile_levels_are_the_midpoints():
  np.testing.assert_array_equal(quantile_midpoints(4), [1 / 8, 3 / 8, 5 / 8, 7 / 8])
  np.testing.assert_array_equal(quantile_midpoints(1), [0.5])


def test_quantile_huber_loss_by_hand():
  # Two quantiles at τ̂ = 1/4, 3/4; θ = (0, 2), target quantiles (1, 4). u_ij = Tθ_j − θ_i:
  #   i = 0: u = (1, 4): Huber (½, 3½), weight |¼ − 0| = ¼ for both: (⅛, ⅞), mean ½
  #   i = 1: u = (−1, 2): Huber (½, 1½), weights |¾ − 1| = ¼ and |¾ − 0| = ¾: (⅛, 9/8), mean ⅝
  # Summed over i: 1⅛. A second sample with θ equal to its targets costs 0.
  theta, target = Tensor([[0.0, 2.0], [3.0, 3.0]]), Tensor([[1.0, 4.0], [3.0, 3.0]])
  loss = quantile_huber_loss(theta, target, Tensor(quantile_midpoints(2))).numpy()
  np.testing.assert_allclose(loss, [1.125, 0.0], rtol=1e-6)


def numpy_quantile_huber(theta, target, tau_hat):
  u = target[:, None, :] - theta[:, :, None]
  huber = np.where(np.abs(u) <= 1, 0.5 * u ** 2, np.abs(u) - 0.5)
  return (np.abs(tau_hat[None, :, None] - (u < 0)) * huber).mean(axis=2).sum(axis=1)


@pytest.mark.parametrize("double_q", [False, True])
def test_jitted_update_is_the_quantile_huber_loss_of_numpy(small_config, double_q):
  config = small_config.replace(quantiles=5, double_q=double_q)
  agent = make_agent(config)
  lag_target(agent, config)  # so that choosing a′ with the target instead of the online net would show
  assert isinstance(agent.head, QuantileHead)
  rng, buf, rows, tau_hat = np.random.default_rng(3), filled_buffer(), np.arange(8), quantile_midpoints(5)
  for _ in range(3):  # run, capture, replay
    buf.sample_into(agent.batch, rng)
    b = agent.batch
    assert choosers_differ(agent, b.next_obs)
    out = agent.online(Tensor(b.obs.copy())).numpy()  # [batch, actions, quantiles]
    next_target = agent.target(Tensor(b.next_obs.copy())).numpy()
    chooser = agent.online(Tensor(b.next_obs.copy())).numpy() if double_q else next_target
    best = chooser.mean(axis=2).argmax(axis=1)
    target = b.rewards[:, None] + b.discounts[:, None] * next_target[rows, best]
    expected = numpy_quantile_huber(out[rows, b.actions], target, tau_hat)
    loss, q_mean = agent.update().numpy()
    assert loss == pytest.approx(expected.mean(), rel=1e-4)
    np.testing.assert_allclose(agent.last_priorities, expected, rtol=1e-4, atol=1e-6)
    assert q_mean == pytest.approx(out[rows, b.actions].mean(), rel=1e-4, abs=1e-5)


def test_prioritized_replay_weights_the_quantile_loss(small_config):
  agent = make_agent(small_config.replace(quantiles=3, prioritized=True))
  buf = filled_buffer(prioritized=True, alpha=0.5)
  buf.update_priorities(np.arange(64), np.random.default_rng(1).random(64) * 3)
  buf.sample_into(agent.batch, np.random.default_rng(0), beta=0.4)
  b = agent.batch
  assert b.weights.min() < 1.0  # not uniform: the weights must reach the loss
  out = agent.online(Tensor(b.obs.copy())).numpy()[np.arange(8), b.actions]
  next_target = agent.target(Tensor(b.next_obs.copy())).numpy()
  target = b.rewards[:, None] + b.discounts[:, None] * next_target[np.arange(8), next_target.mean(2).argmax(1)]
  per_sample = numpy_quantile_huber(out, target, quantile_midpoints(3))
  loss, _ = agent.update().numpy()
  assert loss == pytest.approx((b.weights * per_sample).mean(), rel=1e-4)


@pytest.mark.cpu_only  # numpy acting reads host views of the weights: the CPU's alone
def test_numpy_acting_equals_tinygrad_acting(small_config):
  config = small_config.replace(quantiles=6, dueling=True, noisy=True)
  agent, tinygrad_only = make_agent(config), make_agent(config, host_views=False)
  assert agent._numpy_q is not None and tinygrad_only._numpy_q is None
  rng, buf = np.random.default_rng(1), filled_buffer()
  for _ in range(3):  # the views must follow the optimizer's in-place writes
    buf.sample_into(agent.batch, rng)
    agent.update(rng)
  tinygrad_only.load_state_dict({k: v.numpy() for k, v in agent.state_dict().items()})
  obs = rng.normal(size=(32, 4)).astype(np.float32)
  np.testing.assert_allclose(agent.q_values(obs), tinygrad_only.q_values(obs), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(agent.q_values(obs).argmax(1), tinygrad_only.q_values(obs).argmax(1))
  noise = empty_noise(agent._online_noise_shapes)
  factorized_noise(rng, agent._online_noise_shapes, noise)
  np.testing.assert_allclose(agent.q_values(obs, noise), tinygrad_only.q_values(obs, noise), rtol=1e-5, atol=1e-5)
  out = agent.online(Tensor(obs)).numpy()
  np.testing.assert_allclose(agent.q_values(obs), out.mean(axis=2), rtol=1e-5, atol=1e-6)  # Q is the quantiles' mean


def test_nature_cnn_with_quantiles():
  Tensor.manual_seed(0)
  net = QNetwork(NatureCNN((4, 84, 84)), QuantileHead(512, 6, quantiles=8, dueling=True))
  frames = np.random.default_rng(0).integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
  out = net(Tensor(frames))
  assert out.shape == (2, 6, 8) and net.head.q_values(out).shape == (2, 6)


def test_config():
  assert make_config("CartPole-v1").quantiles == 0
  assert make_config("CartPole-v1", "qrdqn").quantiles == 50
  with pytest.raises(UserError, match="choose one"): make_config("CartPole-v1", "rainbow", quantiles=10)
  assert make_config("CartPole-v1", "rainbow", quantiles=10, distributional=False).quantiles == 10
  with pytest.raises(UserError, match="quantiles must be >= 0"): make_config("CartPole-v1", quantiles=-1)
