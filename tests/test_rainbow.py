"""Rainbow components against hand computation: n-step returns, prioritized replay, noisy layers, C51."""
import numpy as np
import pytest
from tinygrad import Tensor

from conftest import choosers_differ, filled_buffer, lag_target, make_agent
from tinydqn.heads import atom_log_softmax, atom_softmax, categorical_projection
from tinydqn.buffers import Batch, ReplayBuffer
from tinydqn.dense import NoisyLinear
from tinydqn.networks import empty_noise, factorized_noise
from tinydqn.sumtree import SumTree


# ---- n-step returns ----

def one_env_buffer(rewards, terminated=(), truncated=(), capacity=6, n_step=3, gamma=0.5) -> ReplayBuffer:
  buf = ReplayBuffer(capacity, (1,), np.float32, n_step=n_step, gamma=gamma)
  for t, r in enumerate(rewards):
    buf.add(np.array([[t]]), [0], [r], np.array([[t + 1]]), [t in terminated], [t in truncated])
  return buf


def test_n_step_by_hand_across_a_terminal_and_the_ring_wrap():
  # 8 transitions into 6 slots: rows hold t = 6, 7, 2, 3, 4, 5; t = 3 ends its episode; t = 7 is the newest.
  buf = one_env_buffer(rewards=[1, 2, 3, 4, 5, 6, 7, 8], terminated={3})
  rewards, discounts, last = buf.n_step_returns(np.array([2, 3, 4, 5, 0, 1]))
  np.testing.assert_allclose(rewards, [3 + .5 * 4,            # stops at the terminal t=3
                                       4,                     # the terminal itself
                                       5 + .5 * 6 + .25 * 7,  # t=4,5,6: three steps, the last one wrapped to row 0
                                       6 + .5 * 7 + .25 * 8,
                                       7 + .5 * 8,            # t=7 is the newest: its future is not known yet
                                       8])
  np.testing.assert_allclose(discounts, [0, 0, .125, .125, .25, .5])
  np.testing.assert_array_equal(last, [3, 3, 0, 1, 1, 1])  # bootstrap from next_obs of these rows
  out = Batch.empty(6, (1,), np.dtype(np.float32))
  buf.gather_into(np.array([2, 3, 4, 5, 0, 1]), out)
  np.testing.assert_array_equal(out.next_obs[:, 0], [4, 4, 7, 8, 8, 8])  # next_obs of t = 3, 3, 6, 7, 7, 7


def test_n_step_bootstraps_through_truncation():
  buf = one_env_buffer(rewards=[1, 1, 1, 1, 1], truncated={1}, capacity=8)
  rewards, discounts, last = buf.n_step_returns(np.arange(5))
  np.testing.assert_allclose(rewards, [1.5, 1, 1.75, 1.5, 1])
  np.testing.assert_allclose(discounts, [.25, .5, .125, .25, .5])  # γᵏ after the cut, not 0
  np.testing.assert_array_equal(last, [1, 1, 4, 4, 4])


def slow_n_step(per_env: list[list[tuple]], n: int, gamma: float):
  """Reference over each env's own list of (reward, terminated, truncated, next_obs) in time order."""
  out = {}
  for e, steps in enumerate(per_env):
    for t in range(len(steps)):
      total, k = 0.0, 0
      while True:
        r, term, trunc, nxt = steps[t + k]
        total += gamma ** k * r
        k += 1
        if term: out[(e, t)] = (total, 0.0, nxt); break
        if trunc or k == n or t + k == len(steps): out[(e, t)] = (total, gamma ** k, nxt); break
  return out


@pytest.mark.parametrize("num_envs,n_step", [(1, 1), (1, 3), (3, 3), (2, 5)])
def test_n_step_matches_a_slow_reference_on_random_episodes(num_envs, n_step):
  rng, gamma, steps = np.random.default_rng(num_envs * 10 + n_step), 0.9, 57
  capacity = 10 * num_envs  # small: the ring wraps several times
  buf = ReplayBuffer(capacity, (1,), np.float32, num_envs=num_envs, n_step=n_step, gamma=gamma)
  history: list[list[tuple]] = [[] for _ in range(num_envs)]
  for _ in range(steps):
    r = rng.normal(size=num_envs).astype(np.float32)
    term, trunc = rng.random(num_envs) < 0.15, rng.random(num_envs) < 0.1
    trunc &= ~term
    nxt = rng.normal(size=(num_envs, 1)).astype(np.float32)
    buf.add(np.zeros((num_envs, 1)), np.zeros(num_envs), r, nxt, term, trunc)
    for e in range(num_envs): history[e].append((r[e], term[e], trunc[e], nxt[e, 0]))
  expected = slow_n_step(history, n_step, gamma)
  idx = np.arange(capacity)
  rewards, discounts, last = buf.n_step_returns(idx)
  for i in idx:
    # row i holds env i % num_envs at the time step that last wrote it
    e, row = i % num_envs, i // num_envs
    t = max(tt for tt in range(steps) if tt % (capacity // num_envs) == row)
    r, d, nxt = expected[(e, t)]
    assert rewards[i] == pytest.approx(r, rel=1e-5, abs=1e-5) and discounts[i] == pytest.approx(d, rel=1e-5)
    assert buf.next_obs[last[i], 0] == nxt


# ---- prioritized replay ----

def test_sum_tree_totals_and_sampling_frequencies_follow_priorities():
  tree = SumTree(10)
  priorities = np.array([1, 2, 3, 4, 0, 5, 6, 7, 8, 9], dtype=np.float64)
  tree.set(np.arange(10), priorities)
  assert tree.total == pytest.approx(45.0)
  tree.set(np.array([9]), np.array([14.0]))  # an update re-sums every ancestor
  priorities[9] = 14.0
  assert tree.total == pytest.approx(50.0)
  rng = np.random.default_rng(0)
  draws = np.concatenate([tree.sample(64, rng)[0] for _ in range(500)])
  counts = np.bincount(draws, minlength=10)
  assert counts[4] == 0  # priority 0 is never drawn
  expected = priorities / priorities.sum() * len(draws)
  nonzero = expected > 0
  chi2 = ((counts[nonzero] - expected[nonzero]) ** 2 / expected[nonzero]).sum()
  assert chi2 < 27.9  # chi-square, 8 degrees of freedom: p = 0.0005
  idx, probs = tree.sample(5, rng)
  np.testing.assert_allclose(probs, priorities[idx] / 50.0)


def test_prioritized_weights_and_priority_updates_follow_the_formulas():
  alpha, beta, eps = 0.6, 0.4, 1e-3
  buf = ReplayBuffer(8, (1,), np.float32, prioritized=True, alpha=alpha, priority_eps=eps)
  for t in range(6): buf.add(np.array([[t]]), [0], [t], np.array([[t]]), [0], [0])
  np.testing.assert_allclose(buf.priorities.leaves[:6], 1.0)  # new transitions: the max priority so far (1)
  td = np.array([0.5, -2.0, 0.0, 1.0, 3.0, -0.1])
  buf.update_priorities(np.arange(6), td)
  p = (np.abs(td) + eps) ** alpha
  np.testing.assert_allclose(buf.priorities.leaves[:6], p)
  buf.add(np.array([[6]]), [0], [6], np.array([[6]]), [0], [0])  # a new one gets the largest priority seen
  assert buf.priorities.leaves[6] == pytest.approx((3.0 + eps) ** alpha)
  p = np.append(p, (3.0 + eps) ** alpha)
  out = Batch.empty(32, (1,), np.dtype(np.float32))
  idx = buf.sample_into(out, np.random.default_rng(1), beta)
  w = (7 * p[idx] / p.sum()) ** -beta
  np.testing.assert_allclose(out.weights, w / w.max(), rtol=1e-5)
  np.testing.assert_array_equal(out.obs[:, 0], idx)


def test_prioritized_update_returns_td_errors_and_weights_the_loss(small_config):
  agent = make_agent(small_config.replace(loss="mse"))
  buf = filled_buffer()
  idx = buf.sample_into(agent.batch, np.random.default_rng(0))
  b = agent.batch
  q = agent.q_values(b.obs)[np.arange(8), b.actions]
  y = b.rewards + b.discounts * agent.q_values(b.next_obs).max(1)  # target = online at the start
  b.weights[:] = np.linspace(0.1, 1.0, 8)
  loss, _ = agent.update().numpy()
  np.testing.assert_allclose(agent.last_priorities, np.abs(y - q), rtol=1e-4, atol=1e-6)  # |δ|, not the loss
  assert loss == pytest.approx(np.mean(b.weights * (y - q) ** 2), rel=1e-4)
  assert len(idx) == 8


# ---- noisy nets ----

def test_noisy_linear_is_mean_plus_factorised_noise():
  Tensor.manual_seed(0)
  layer = NoisyLinear(5, 3)
  np.testing.assert_allclose(layer.weight_sigma.numpy(), 0.5 / np.sqrt(5))
  noise = [(np.zeros(5, np.float32), np.zeros(3, np.float32))]
  factorized_noise(np.random.default_rng(0), [(5, 3)], noise)
  f_in, f_out = noise[0]
  eps = np.random.default_rng(0).standard_normal(5, dtype=np.float32)
  np.testing.assert_allclose(f_in, np.sign(eps) * np.sqrt(np.abs(eps)))
  x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
  w = layer.weight.numpy() + layer.weight_sigma.numpy() * np.outer(f_out, f_in)
  b = layer.bias.numpy() + layer.bias_sigma.numpy() * f_out
  got = layer(Tensor(x), (Tensor(f_in), Tensor(f_out))).numpy()
  np.testing.assert_allclose(got, x @ w.T + b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(layer(Tensor(x)).numpy(), x @ layer.weight.numpy().T + layer.bias.numpy(), rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize("sigma0", [0.5, 0.1])
def test_noisy_layers_start_at_sigma0_over_root_fan_in(small_config, sigma0):
  agent = make_agent(small_config.replace(noisy=True, noisy_sigma0=sigma0))
  layers = agent.online.noisy_layers()
  assert len(layers) == 3  # two hidden layers and the head: none is left plain
  for layer in layers:
    fan_in = layer.shape[0]
    np.testing.assert_allclose(layer.weight_sigma.numpy(), sigma0 / np.sqrt(fan_in), rtol=1e-6)
    np.testing.assert_allclose(layer.bias_sigma.numpy(), sigma0 / np.sqrt(fan_in), rtol=1e-6)


def test_noisy_acting_draws_fresh_noise_and_numpy_equals_tinygrad(small_config):
  config = small_config.replace(noisy=True, dueling=True)
  agent, tinygrad_only = make_agent(config), make_agent(config, host_views=False)
  tinygrad_only.load_state_dict({k: v.numpy() for k, v in agent.state_dict().items()})
  obs = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
  noise = empty_noise(agent._online_noise_shapes)
  assert len(noise) == 4  # two hidden layers, advantage and value streams
  for seed in range(3):
    factorized_noise(np.random.default_rng(seed), agent._online_noise_shapes, noise)
    np.testing.assert_allclose(agent.q_values(obs, noise), tinygrad_only.q_values(obs, noise), rtol=1e-5, atol=1e-5)
  q_mean = agent.q_values(obs)
  assert not np.allclose(agent.q_values(obs, noise), q_mean)
  np.testing.assert_allclose(tinygrad_only.q_values(obs), q_mean, rtol=1e-5, atol=1e-5)
  rng = np.random.default_rng(5)
  actions = [agent.act(obs, 0.0, rng) for _ in range(10)]  # ε is 0, yet actions vary with the noise
  assert len({a.tobytes() for a in actions}) > 1


@pytest.mark.parametrize("host_views", [pytest.param(True, marks=pytest.mark.cpu_only), False])
def test_noisy_update_reads_the_staged_noise_every_call(small_config, host_views):
  """The jit must not freeze the noise drawn at capture: each step's loss matches an eager recomputation
  (with host views the jit reads the staged noise in place; without, it is copied in before each call)."""
  agent = make_agent(small_config.replace(noisy=True, loss="mse"), host_views=host_views)
  rng, buf = np.random.default_rng(0), filled_buffer()
  losses = []
  for _ in range(4):
    buf.sample_into(agent.batch, rng)
    factorized_noise(rng, agent._noise_shapes, agent.noise)
    b, n = agent.batch, len(agent.noise) // 2
    online_noise = [(Tensor(i.copy()), Tensor(o.copy())) for i, o in agent.noise[:n]]
    target_noise = [(Tensor(i.copy()), Tensor(o.copy())) for i, o in agent.noise[n:]]
    q = (agent.online(Tensor(b.obs.copy()), online_noise).numpy())[np.arange(8), b.actions]
    next_v = agent.target(Tensor(b.next_obs.copy()), target_noise).numpy().max(1)
    expected = np.mean((b.rewards + b.discounts * next_v - q) ** 2)
    loss, _ = agent.update().numpy()
    assert loss == pytest.approx(expected, rel=1e-4)
    losses.append(loss)
  assert len(set(losses)) == 4


def test_noisy_nets_turn_epsilon_off(small_config):
  from tinydqn.train import linear_epsilon
  assert linear_epsilon(small_config, 0) == 1.0 and linear_epsilon(small_config.replace(noisy=True), 0) == 0.0


# ---- C51 ----

def slow_projection(rewards, discounts, probs, v_min, v_max):
  atoms = probs.shape[1]
  dz = (v_max - v_min) / (atoms - 1)
  z = np.linspace(v_min, v_max, atoms)
  m = np.zeros_like(probs, dtype=np.float64)
  for i in range(len(rewards)):
    for j in range(atoms):
      tz = min(v_max, max(v_min, rewards[i] + discounts[i] * z[j]))
      b = (tz - v_min) / dz
      lo, hi = int(np.floor(b)), int(np.ceil(b))
      if lo == hi: m[i, lo] += probs[i, j]
      else:
        m[i, lo] += probs[i, j] * (hi - b)
        m[i, hi] += probs[i, j] * (b - lo)
  return m


def test_categorical_projection_matches_a_slow_reference():
  rng = np.random.default_rng(0)
  for atoms, v_min, v_max in [(51, -10.0, 10.0), (11, 0.0, 100.0), (5, -1.0, 1.0)]:
    rewards = rng.normal(scale=v_max / 2, size=32).astype(np.float32)
    rewards[:3] = [0.0, v_max * 3, v_min * 3]  # exactly on an atom, and far outside the support
    discounts = rng.choice([0.0, 0.9, 0.99 ** 3], size=32).astype(np.float32)
    probs = rng.dirichlet(np.ones(atoms), size=32).astype(np.float32)
    got = categorical_projection(Tensor(rewards), Tensor(discounts), Tensor(probs), v_min, v_max).numpy()
    np.testing.assert_allclose(got, slow_projection(rewards, discounts, probs, v_min, v_max), atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-5)


def test_atom_softmaxes_give_softmax_and_log_softmax_values_and_gradients():
  """C51's softmaxes over atoms (stored exponentials, a written-out log-softmax gradient) against numpy's values and
  the gradient of Σ g·log p by hand: g − p·Σg."""
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=5.0, size=(4, 3, 51)).astype(np.float32)
  upstream = rng.normal(size=(4, 3, 51)).astype(np.float32)
  shifted = logits - logits.max(axis=2, keepdims=True)
  p = np.exp(shifted) / np.exp(shifted).sum(axis=2, keepdims=True)
  x = Tensor(logits)
  log_p = atom_log_softmax(x)
  np.testing.assert_allclose(atom_softmax(x).numpy(), p, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(log_p.numpy(), np.log(p), rtol=1e-5, atol=1e-5)
  (grad,) = (log_p * Tensor(upstream)).sum().gradient(x)
  np.testing.assert_allclose(grad.numpy(), upstream - p * upstream.sum(axis=2, keepdims=True), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("double_q", [False, True])
def test_c51_update_is_cross_entropy_to_the_projected_target(small_config, double_q):
  config = small_config.replace(distributional=True, atoms=11, v_min=-5.0, v_max=5.0, double_q=double_q)
  agent = make_agent(config)
  lag_target(agent, config)  # so that choosing a′ with the target instead of the online net would show
  rng, buf, z = np.random.default_rng(3), filled_buffer(), np.linspace(-5, 5, 11)
  softmax = lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)
  for _ in range(3):
    buf.sample_into(agent.batch, rng)
    b, rows = agent.batch, np.arange(8)
    assert choosers_differ(agent, b.next_obs)
    logits = agent.online(Tensor(b.obs.copy())).numpy()
    next_p = softmax(agent.target(Tensor(b.next_obs.copy())).numpy())
    chooser = agent.q_values(b.next_obs) if double_q else (next_p * z).sum(-1)
    target = slow_projection(b.rewards, b.discounts, next_p[rows, chooser.argmax(1)], -5.0, 5.0)
    log_p = np.log(softmax(logits[rows, b.actions]))
    ce = -(target * log_p).sum(1)
    np.testing.assert_allclose(agent.q_values(b.obs), (softmax(logits) * z).sum(-1), rtol=1e-5, atol=1e-5)
    loss, q_mean = agent.update().numpy()
    assert loss == pytest.approx(ce.mean(), rel=1e-4)
    np.testing.assert_allclose(agent.last_priorities, ce, rtol=1e-4)
    assert q_mean == pytest.approx((softmax(logits[rows, b.actions]) * z).sum(1).mean(), rel=1e-4, abs=1e-5)
