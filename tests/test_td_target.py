"""The TD target and loss are equation 3 (with the Nature target network), checked on hand-made numbers."""
import math

import numpy as np
import pytest
from tinygrad import Tensor

from conftest import choosers_differ, filled_buffer, lag_target, make_agent
from tinydqn.heads import MunchausenHead, td_loss, td_target

GAMMA = 0.9
REWARDS = [1.0, -0.5, 2.0]
TERMINATED = [0.0, 1.0, 0.0]  # the third transition was truncated by a time limit: still bootstrapped
NEXT_Q_TARGET = [[1.0, 3.0], [5.0, -2.0], [0.5, 0.25]]
NEXT_Q_ONLINE = [[2.0, 1.0], [0.0, 9.0], [0.0, 1.0]]


def discounts(gamma: float) -> Tensor:
  return Tensor([gamma * (1.0 - t) for t in TERMINATED])


def test_dqn_target_by_hand():
  y = td_target(Tensor(REWARDS), discounts(GAMMA), Tensor(NEXT_Q_TARGET)).numpy()
  # non-terminal: r + γ max_a' Q̂; terminal: r alone; truncated: bootstraps like non-terminal
  np.testing.assert_allclose(y, [1.0 + 0.9 * 3.0, -0.5, 2.0 + 0.9 * 0.5], rtol=1e-6)


def test_double_dqn_target_by_hand():
  y = td_target(Tensor(REWARDS), discounts(GAMMA), Tensor(NEXT_Q_TARGET), Tensor(NEXT_Q_ONLINE)).numpy()
  # a' = argmax of the online net (0, 1, 1), valued by the target net (1.0, -2.0, 0.25)
  np.testing.assert_allclose(y, [1.0 + 0.9 * 1.0, -0.5, 2.0 + 0.9 * 0.25], rtol=1e-6)


def test_gamma_zero_and_one():
  np.testing.assert_allclose(td_target(Tensor(REWARDS), discounts(0.0), Tensor(NEXT_Q_TARGET)).numpy(), REWARDS)
  np.testing.assert_allclose(td_target(Tensor(REWARDS), discounts(1.0), Tensor(NEXT_Q_TARGET)).numpy(),
                             [4.0, -0.5, 2.5])


def test_losses_by_hand():
  q, y = Tensor([0.0, 0.0, 0.0]), Tensor([0.5, -2.0, 3.0])
  assert td_loss(q, y, "mse").item() == pytest.approx((0.25 + 4.0 + 9.0) / 3)
  assert td_loss(q, y, "huber").item() == pytest.approx((0.125 + 1.5 + 2.5) / 3)


@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_update_loss_matches_numpy(small_config, double_q, loss):
  """The jitted step gathers Q(φ_j, a_j) and builds y_j from the target net exactly as written by hand."""
  config = small_config.replace(double_q=double_q, loss=loss, gamma=0.97)
  agent = make_agent(config)
  lag_target(agent, config)  # the target lags: Double DQN's choice of a′ by the online net is then visible
  rng = np.random.default_rng(1)
  buf = filled_buffer(gamma=0.97)
  for _ in range(3):  # run past the jit's capture so the replayed graph is checked too
    drawn = buf.sample_into(agent.batch, rng)
    b = agent.batch
    assert choosers_differ(agent, b.next_obs)
    q = agent.q_values(b.obs)[np.arange(len(b.actions)), b.actions]
    next_target = agent.target(Tensor(b.next_obs)).numpy()
    if double_q: next_v = next_target[np.arange(len(b.actions)), agent.q_values(b.next_obs).argmax(1)]
    else: next_v = next_target.max(1)
    np.testing.assert_array_equal(b.discounts, np.float32(0.97) * (1 - buf.terminated[drawn]))
    y = b.rewards + b.discounts * next_v
    err = y - q
    expected = np.mean(err ** 2) if loss == "mse" else np.mean(np.where(np.abs(err) < 1, 0.5 * err ** 2, np.abs(err) - 0.5))
    got_loss, got_q = agent.update().numpy()
    assert got_loss == pytest.approx(expected, rel=1e-4)
    assert got_q == pytest.approx(q.mean(), rel=1e-4, abs=1e-6)


def munchausen_loss(out, next_target, target_at_s, actions, alpha=0.9, tau=1.0, clip=-1.0, gamma=GAMMA):
  from tinydqn.buffers import Batch
  head = MunchausenHead(4, 2, alpha, tau, clip, kind="mse")
  batch = Batch(obs=None, actions=Tensor(actions), rewards=Tensor(REWARDS), discounts=discounts(gamma), next_obs=None,
                weights=None)
  per_sample, _ = head.loss(Tensor(out), Tensor(next_target), None, batch, target_at_s=Tensor(target_at_s))
  return per_sample.numpy()


def test_munchausen_target_by_hand():
  """y = r + α·clip(τ log π(a|s), l₀, 0) + discount·Σ π(a'|s')(Q̂(s', a') − τ log π(a'|s')), π = softmax(Q̂/τ); τ = 1."""
  target_at_s = [[1.0, 3.0], [0.0, 0.0], [2.0, 1.5]]
  actions = [0, 1, 0]
  def log_pi(q, a): return q[a] - math.log(sum(math.exp(v) for v in q))
  def soft_v(q): return sum(math.exp(log_pi(q, a)) * (q[a] - log_pi(q, a)) for a in range(2))  # = log Σ exp q
  bonus = [max(log_pi(q, a), -1.0) for q, a in zip(target_at_s, actions)]  # -2.127 clipped to -1; log ½; -0.474
  assert bonus[0] == -1.0 and bonus[1] == pytest.approx(math.log(0.5))
  y = [r + 0.9 * b + d * soft_v(q) for r, b, d, q in zip(REWARDS, bonus, discounts(GAMMA).numpy(), NEXT_Q_TARGET)]
  assert y[1] == pytest.approx(-0.5 + 0.9 * math.log(0.5))  # terminal: no bootstrap, the bonus stays
  out = np.zeros((3, 2), np.float32)
  np.testing.assert_allclose(munchausen_loss(out, NEXT_Q_TARGET, target_at_s, actions), np.square(y), rtol=1e-5)


def test_munchausen_without_bonus_and_with_a_small_temperature_is_the_dqn_target():
  """α = 0 and τ → 0: π is greedy, the soft value is max Q̂ and y is equation 3's."""
  out, actions = np.zeros((3, 2), np.float32), [0, 1, 0]
  got = munchausen_loss(out, NEXT_Q_TARGET, np.ones((3, 2)), actions, alpha=0.0, tau=1e-4)
  y = td_target(Tensor(REWARDS), discounts(GAMMA), Tensor(NEXT_Q_TARGET)).numpy()
  np.testing.assert_allclose(got, np.square(y), rtol=1e-4)


def test_munchausen_update_loss_matches_numpy(small_config):
  """The jitted step evaluates the target net at s as well as at s', and builds the Munchausen target from both."""
  alpha, tau, clip = 0.9, 0.03, -1.0
  agent = make_agent(small_config.replace(munchausen=alpha, munchausen_tau=tau, munchausen_clip=clip, loss="mse"))
  rng, buf = np.random.default_rng(1), filled_buffer()
  def tau_log_pi(q):
    adv = q - q.max(1, keepdims=True)
    return adv - tau * np.log(np.exp(adv / tau).sum(1, keepdims=True))
  for _ in range(3):
    buf.sample_into(agent.batch, rng)
    b, rows = agent.batch, np.arange(len(agent.batch.actions))
    q = agent.q_values(b.obs)[rows, b.actions]
    at_s, at_next = (agent.target(Tensor(o)).numpy().astype(np.float64) for o in (b.obs, b.next_obs))
    bonus = np.clip(tau_log_pi(at_s)[rows, b.actions], clip, 0.0)
    log_pi = tau_log_pi(at_next)
    y = b.rewards + alpha * bonus + b.discounts * (np.exp(log_pi / tau) * (at_next - log_pi)).sum(1)
    got_loss, _ = agent.update().numpy()
    assert got_loss == pytest.approx(np.mean((y - q) ** 2), rel=1e-4)
    agent.sync_target()
