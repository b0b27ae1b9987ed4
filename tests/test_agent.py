"""What the optimizer, the target network and the acting paths may and may not touch."""
import numpy as np
import pytest
from tinygrad import Tensor

from conftest import filled_buffer, make_agent, params_numpy


def step(agent, rng, buf, n=1):
  for _ in range(n):
    buf.sample_into(agent.batch, rng)
    agent.update()


def test_gradients_reach_every_online_layer_and_never_the_target(small_config):
  agent = make_agent(small_config)
  online0, target0 = params_numpy(agent.online), params_numpy(agent.target)
  step(agent, np.random.default_rng(0), filled_buffer(), n=3)
  for before, after in zip(online0, params_numpy(agent.online)): assert not np.array_equal(before, after)
  for before, after in zip(target0, params_numpy(agent.target)): np.testing.assert_array_equal(before, after)


def test_target_starts_as_a_copy_and_sync_copies_rather_than_aliases(small_config):
  agent = make_agent(small_config)
  for o, t in zip(params_numpy(agent.online), params_numpy(agent.target)): np.testing.assert_array_equal(o, t)
  rng, buf = np.random.default_rng(0), filled_buffer()
  for _ in range(3):  # past jit capture of both the update and the sync
    step(agent, rng, buf)
    agent.sync_target()
    synced = params_numpy(agent.online)
    for o, t in zip(synced, params_numpy(agent.target)): np.testing.assert_array_equal(o, t)
  step(agent, rng, buf)  # the online net moves on; the target must stay at the synced values
  for s, t, o in zip(synced, params_numpy(agent.target), params_numpy(agent.online)):
    np.testing.assert_array_equal(s, t)
    assert not np.array_equal(o, t)


def test_hard_sync_is_skipped_only_while_the_online_net_is_unchanged(small_config):
  """A copy of θ onto an equal θ⁻ is skipped; after a gradient step, or a load that may leave θ⁻ behind θ, it runs."""
  agent = make_agent(small_config)
  copies = []
  sync = agent._sync
  agent._sync = lambda: (copies.append(1), sync())
  rng, buf = np.random.default_rng(0), filled_buffer()
  agent.sync_target()
  assert not copies  # θ⁻ starts as a copy
  step(agent, rng, buf)
  agent.sync_target()
  agent.sync_target()
  assert len(copies) == 1
  state = {k: v.numpy() for k, v in agent.state_dict().items()}
  state = {k: v + 1 if k.startswith("target.") else v for k, v in state.items()}  # θ⁻ ≠ θ, as between syncs
  agent.load_state_dict(state)
  agent.sync_target()
  assert len(copies) == 2
  for o, t in zip(params_numpy(agent.online), params_numpy(agent.target)): np.testing.assert_array_equal(o, t)


def test_polyak_update(small_config):
  agent = make_agent(small_config.replace(tau=0.1))
  step(agent, np.random.default_rng(0), filled_buffer(), n=2)
  online, target = params_numpy(agent.online), params_numpy(agent.target)
  agent.sync_target()
  for o, t, new in zip(online, target, params_numpy(agent.target)):
    np.testing.assert_allclose(new, 0.1 * o + 0.9 * t, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dueling", [False, True])
def test_numpy_acting_equals_tinygrad_forward_after_training(small_config, dueling):
  agent = make_agent(small_config.replace(dueling=dueling))
  step(agent, np.random.default_rng(0), filled_buffer(), n=4)  # views must follow the optimizer's in-place writes
  obs = np.random.default_rng(2).normal(size=(32, 4)).astype(np.float32)
  expected = agent.online(Tensor(obs)).numpy()
  np.testing.assert_allclose(agent.q_values(obs), expected, rtol=1e-5, atol=1e-5)
  tinygrad_only = make_agent(small_config.replace(dueling=dueling), host_views=False)
  tinygrad_only.load_state_dict({k: v.numpy() for k, v in agent.state_dict().items()})
  for _ in range(3): np.testing.assert_allclose(tinygrad_only.q_values(obs), expected, rtol=1e-5, atol=1e-5)
  assert (agent.q_values(obs).argmax(1) == tinygrad_only.q_values(obs).argmax(1)).all()


@pytest.mark.cpu_only
def test_jitted_acting_through_host_views_follows_new_observations_and_weights(small_config):
  """Networks without a numpy forward (the CNNs) act through a jit that reads observations written in place: each
  call must see its own observations and the weights the last gradient steps left."""
  agent = make_agent(small_config)
  agent._numpy_q = None  # act through the jit, as the Nature CNN does
  rng, buf = np.random.default_rng(0), filled_buffer()
  for _ in range(3):
    for obs in (rng.normal(size=(5, 4)).astype(np.float32) for _ in range(3)):
      np.testing.assert_allclose(agent.q_values(obs), agent.online(Tensor(obs)).numpy(), rtol=1e-5, atol=1e-6)
    step(agent, rng, buf, n=2)


def test_dueling_head_is_value_plus_centered_advantage(small_config):
  agent = make_agent(small_config.replace(dueling=True))
  obs = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
  x = Tensor(obs)
  for layer in agent.online.torso.hidden: x = layer(x).relu()
  adv, value = agent.head.advantage(x).numpy(), agent.head.value(x).numpy()
  np.testing.assert_allclose(agent.q_values(obs), value + adv - adv.mean(1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.cpu_only
def test_host_views_and_tinygrad_staging_train_identically(small_config):
  """The zero-copy CPU fast path is an optimisation only: same seeds give bit-identical weights."""
  results = []
  for host_views in (True, False):
    agent = make_agent(small_config, host_views=host_views)
    step(agent, np.random.default_rng(0), filled_buffer(), n=5)
    agent.sync_target()
    results.append(params_numpy(agent.online) + params_numpy(agent.target))
  for a, b in zip(*results): np.testing.assert_array_equal(a, b)


def test_learning_rate_is_changed_in_place_for_the_jitted_step(small_config):
  agents = [make_agent(small_config) for _ in range(2)]
  agents[1].set_learning_rate(0.0)
  for agent in agents: step(agent, np.random.default_rng(0), filled_buffer(), n=3)
  assert not np.array_equal(params_numpy(agents[0].online)[0], params_numpy(agents[1].online)[0])
  fresh = make_agent(small_config)
  for a, b in zip(params_numpy(fresh.online), params_numpy(agents[1].online)): np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "rmsprop_torch"])
def test_optimizers_reduce_the_loss_on_a_fixed_batch(small_config, optimizer):
  agent = make_agent(small_config.replace(optimizer=optimizer, learning_rate=1e-2))
  filled_buffer().sample_into(agent.batch, np.random.default_rng(0))
  losses = [agent.update().numpy()[0] for _ in range(200)]
  assert losses[-1] < 0.5 * losses[0]


def test_adam_eps_sets_the_size_of_the_first_step(small_config):
  """Adam's first step moves each weight by lr·g/(|g| + ε): ≈ lr when ε is tiny, far less when ε dwarfs |g|."""
  moves = {}
  for eps in (1e-8, 1e3):
    agent = make_agent(small_config.replace(learning_rate=1e-2, adam_eps=eps))
    before = params_numpy(agent.online)
    step(agent, np.random.default_rng(0), filled_buffer())
    moves[eps] = max(np.abs(a - b).max() for a, b in zip(params_numpy(agent.online), before))
  assert moves[1e-8] == pytest.approx(1e-2, rel=1e-3)
  assert moves[1e3] < 1e-5


def test_gradient_clipping_rescales_to_the_global_norm(small_config):
  """With Adam's ε ≫ |g| the first step is lr·g/(|g| + ε) ≈ lr·g/ε, linear in the gradient, so the step shows the
  gradient the optimizer received: unclipped its global norm exceeds the limit; clipped it equals the limit and
  points the same way."""
  lr, eps = 1e3, 1e3  # a step ≈ g itself: large enough to survive float32 rounding of the weights
  grads = {}
  for max_norm in (0.0, 1e-2):
    agent = make_agent(small_config.replace(learning_rate=lr, adam_eps=eps, max_grad_norm=max_norm))
    before = params_numpy(agent.online)
    step(agent, np.random.default_rng(0), filled_buffer())
    grads[max_norm] = np.concatenate([(a - b).ravel() for a, b in zip(params_numpy(agent.online), before)]) * -eps / lr
  norm = np.linalg.norm(grads[0.0])
  assert norm > 0.1  # well above the limit, or clipping would not act
  assert np.linalg.norm(grads[1e-2]) == pytest.approx(1e-2, rel=1e-3)
  np.testing.assert_allclose(grads[1e-2], grads[0.0] * 1e-2 / norm, rtol=1e-3, atol=1e-7)  # weights round at ≈3e-8


@pytest.mark.parametrize("eps_inside_root, momentum", [(True, 0.0), (False, 0.0), (False, 0.95)])
def test_rmsprop_matches_its_formulas(eps_inside_root, momentum):
  """Five steps on gradients chosen by hand, against the two conventions written out in numpy: DeepMind's
  lr·g/√(E[g²] − E[g]² + ε), and torch's b ← μ·b + g/(√(E[g²] − E[g]²) + ε), step lr·b."""
  from tinygrad import Context

  from tinydqn.agent import RMSprop
  grads = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  w = Tensor.zeros(3).contiguous().realize()
  opt = RMSprop([w], lr=0.1, eps=0.01, eps_inside_root=eps_inside_root, momentum=momentum)
  ref, mean_sq, mean, velocity = np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3)
  for g in grads:
    with Context(TRAINING=1):
      opt.zero_grad()
      (w * Tensor(g)).sum().backward()
      opt.step()
    mean_sq, mean = 0.95 * mean_sq + 0.05 * g ** 2, 0.95 * mean + 0.05 * g
    variance = mean_sq - mean ** 2
    step = g / (np.sqrt(variance + 0.01) if eps_inside_root else np.sqrt(variance) + 0.01)
    velocity = momentum * velocity + step
    ref -= 0.1 * (velocity if momentum else step)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_epsilon_greedy(small_config):
  agent = make_agent(small_config)
  obs = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
  greedy = agent.q_values(obs).argmax(1)
  rng = np.random.default_rng(0)
  assert all((agent.act(obs, 0.0, rng) == greedy).all() for _ in range(20))
  random = np.stack([agent.act(obs, 1.0, rng) for _ in range(200)])
  assert abs(random.mean() - 0.5) < 0.05 and set(np.unique(random)) == {0, 1}
  half = np.stack([agent.act(obs, 0.5, rng) for _ in range(400)])
  assert abs((half == greedy).mean() - 0.75) < 0.03  # greedy half the time, and a random pick agrees half of the rest


def test_jit_inputs_are_named_after_the_minibatch_fields_and_noise(small_config):
  """The jitted step finds each staged array by name: a field added to Batch cannot shift the others' positions.
  The jits take no arguments (the staged tensors are fixed buffers, like the weights), so what the body reads
  is the name -> tensor maps; each name must stage its own buffer, the one the sampler writes through."""
  import dataclasses
  from tinydqn.buffers import Batch
  agent = make_agent(small_config.replace(noisy=True, gradient_steps=2, fused_updates=2))
  step(agent, np.random.default_rng(0), filled_buffer(), n=3)  # run, capture, replay
  fields = [f.name for f in dataclasses.fields(Batch)]
  noise = [f"noise{i}_{end}" for i in range(6) for end in ("in", "out")]  # 3 noisy layers, online and target
  assert sorted(agent._step_inputs) == sorted(fields + noise)
  assert sorted(agent._fused_inputs) == sorted(f"{k}.{n}" for k in range(2) for n in fields + noise)
  buffers = [t.uop.base.realized for t in agent._fused_inputs.values()]
  assert len({id(b) for b in buffers}) == len(buffers)  # no two names share a buffer
  if agent._zero_copy:  # the sampler's numpy arrays are views of the tensors of the same name
    from tinydqn.dense import cpu_view
    for k, batch in enumerate(agent.batches):
      for name in fields: assert np.shares_memory(getattr(batch, name), cpu_view(agent._fused_inputs[f"{k}.{name}"]))


def test_captured_step_trains_on_the_minibatch_staged_for_each_call(small_config):
  """The jit reads the staged buffers' current contents on every replay, not the minibatch seen at capture:
  each call's reported mean Q(φ, a) is that of the minibatch staged for it. (Fused bursts: test_fused_updates.py
  shows they compute what these single steps compute.)"""
  agent = make_agent(small_config)
  rng, buf = np.random.default_rng(0), filled_buffer()
  for _ in range(3): agent.updates(1, lambda batch: buf.sample_into(batch, rng))  # capture, then replay
  for scale in (3.0, 5.0, 7.0):
    buf.sample_into(agent.batch, rng)
    agent.batch.obs[:] = rng.normal(scale=scale, size=agent.batch.obs.shape)  # unlike anything the buffer holds
    q = agent.q_values(agent.batch.obs)
    expected = q[np.arange(len(q)), agent.batch.actions.astype(int)].mean()
    assert agent.update().numpy()[1] == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_read_gives_the_step_statistics_as_numpy_does(small_config):
  """The loop reads [loss, mean Q] through `read` (a host view on the CPU): the same numbers as Tensor.numpy(), and a
  copy that the next step does not overwrite."""
  agent, rng, buf = make_agent(small_config), np.random.default_rng(0), filled_buffer()
  buf.sample_into(agent.batch, rng)
  stats = agent.update()
  read = agent.read(stats)
  np.testing.assert_array_equal(read, stats.numpy())
  assert read.shape == (2,) and np.isfinite(read).all()
  kept = read.copy()
  step(agent, rng, buf, n=2)  # the same jit again: its output buffer is overwritten
  np.testing.assert_array_equal(read, kept)
  assert not np.array_equal(read, agent.read(agent.update()))


@pytest.mark.cpu_only  # lagged acting reads host views of the weights (elsewhere a run refuses it)
def test_lagged_acting_acts_on_the_weights_from_before_the_latest_round(small_config):
  """With lagged_acting, a round left running (`wait=False`) does not change the actions: they use θ as of the
  latest `refresh_acting`, while greedy Q-values (evaluation) wait for the round and see the new θ."""
  agent = make_agent(small_config.replace(lagged_acting=True, learning_rate=0.05))
  memory, rng = filled_buffer(), np.random.default_rng(0)
  obs = np.random.default_rng(1).normal(size=(256, 4)).astype(np.float32) * 2
  agent.refresh_acting()
  before = agent.q_values(obs).argmax(1)
  agent.updates(8, lambda batch: memory.sample_into(batch, rng), wait=False)
  assert (agent.act(obs, 0.0, rng) == before).all()
  after = agent.q_values(obs).argmax(1)
  assert (after != before).any()  # the round changed some greedy actions...
  assert (agent.act(obs, 0.0, rng) == before).all()  # ...that acting does not see until the next round starts
  agent.refresh_acting()
  assert (agent.act(obs, 0.0, rng) == after).all()
