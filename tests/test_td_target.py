"""The TD target and loss are equation 3 (with the Nature target network), checked on hand-made numbers."""
import numpy as np
import pytest
from tinygrad import Tensor

from conftest import filled_buffer, make_agent
from tinydqn.heads import td_loss, td_target

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
  rng = np.random.default_rng(1)
  buf = filled_buffer(gamma=0.97)
  for _ in range(3):  # run past the jit's capture so the replayed graph is checked too
    drawn = buf.sample_into(agent.batch, rng)
    b = agent.batch
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
    agent.sync_target()
