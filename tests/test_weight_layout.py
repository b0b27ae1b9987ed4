"""Dense weights stored [in, out] on the CPU (`tinydqn.weight_layout`): same values, same saved state as [out, in]."""
import numpy as np
import pytest

from conftest import filled_buffer, make_agent
from tinydqn import agent as agent_module
from tinydqn.networks import empty_noise, factorized_noise
from tinydqn.weight_layout import inputs_first, transpose_stored


def test_rule_stores_inputs_first_on_the_cpu_when_the_vector_tile_divides_the_outputs(monkeypatch):
  assert inputs_first(4, 256, "CPU") and inputs_first(120, 64, "CPU")
  assert not inputs_first(120, 84, "CPU") and not inputs_first(256, 2, "CPU")  # CleanRL's 84, an output layer
  assert inputs_first(1024, 1024, "CPU") and not inputs_first(3136, 512, "CPU")  # the Nature CNN's acting reads it
  assert not inputs_first(4, 256, "CL") and not inputs_first(4, 256, "CUDA")
  monkeypatch.setenv("TINYDQN_WIDE", "0")
  assert not inputs_first(4, 256, "CPU")


def test_transpose_stored_moves_weights_and_their_moment_segments_and_undoes_itself():
  w, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7, 8, 9], np.float32)  # W stored [2, 3]
  m_w, m_b = -w, -b
  stored = {"online.w": w, "online.b": b, "optimizer.lr": np.ones(1, np.float32),
            "optimizer.m.0": np.concatenate([m_w.ravel(), m_b]),  # fused: one flat buffer
            "optimizer.v.0": m_w, "optimizer.v.1": m_b}  # per parameter
  saved = transpose_stored(stored, {"online.w"}, [True, False], [(2, 3), (3,)])
  np.testing.assert_array_equal(saved["online.w"], w.T)
  np.testing.assert_array_equal(saved["optimizer.m.0"], [0, -3, -1, -4, -2, -5, -7, -8, -9])
  np.testing.assert_array_equal(saved["optimizer.v.0"], m_w.T)
  for key in ("online.b", "optimizer.lr", "optimizer.v.1"): assert saved[key] is stored[key]
  back = transpose_stored(saved, {"online.w"}, [True, False], [(3, 2), (3,)])
  for key, value in stored.items(): np.testing.assert_array_equal(back[key], value)


def step(agent, n: int = 3) -> None:
  rng, buf = np.random.default_rng(0), filled_buffer()
  for _ in range(n):
    buf.sample_into(agent.batch, rng)
    agent.update(rng)


@pytest.mark.cpu_only
@pytest.mark.parametrize("variant", ["fused optimizer", "optimizer state per parameter", "noisy"])
def test_saved_state_is_the_same_whichever_way_the_agent_stores_its_weights(small_config, monkeypatch, variant):
  """Same seed: the same initial state as an agent storing every weight [out, in]; after training, its state loads
  into such an agent and gives the same Q-values, and back into a new agent bit for bit."""
  if variant == "optimizer state per parameter": monkeypatch.setattr(agent_module, "FUSED_OPTIMIZER_MAX_PARAMS", 0)
  config = small_config.replace(net_arch=(16, 8), noisy=variant == "noisy")
  wide = make_agent(config)
  assert any(wide._transposed_params) and wide.online.torso.hidden[0].weight.shape == (4, 16)
  monkeypatch.setenv("TINYDQN_WIDE", "0")
  stock = make_agent(config)
  monkeypatch.delenv("TINYDQN_WIDE")
  assert not any(stock._transposed_params)
  stock_state = stock.state_arrays()
  assert wide.state_nbytes() == sum(a.nbytes for a in stock_state.values())  # what a snapshot's disk check counts
  for key, value in wide.state_arrays().items(): np.testing.assert_array_equal(value, stock_state[key], err_msg=key)
  step(wide)
  state = {k: np.array(v) for k, v in wide.state_arrays().items()}
  stock.load_state_dict(state)
  obs = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
  np.testing.assert_allclose(stock.q_values(obs), wide.q_values(obs), rtol=1e-5, atol=1e-6)
  if config.noisy:  # σ_W is stored like μ_W; both acting paths see the same noisy weights
    noise = empty_noise(wide._online_noise_shapes)
    factorized_noise(np.random.default_rng(2), wide._online_noise_shapes, noise)
    np.testing.assert_allclose(stock.q_values(obs, noise), wide.q_values(obs, noise), rtol=1e-5, atol=1e-6)
    tinygrad_only = make_agent(config, host_views=False)
    tinygrad_only.load_state_dict(state)
    np.testing.assert_allclose(tinygrad_only.q_values(obs, noise), wide.q_values(obs, noise), rtol=1e-5, atol=1e-6)
  for key, value in stock.state_arrays().items(): np.testing.assert_array_equal(value, state[key], err_msg=key)
  again = make_agent(config, seed=5)
  again.load_state_dict(state)
  for key, value in again.state_arrays().items(): np.testing.assert_array_equal(value, state[key], err_msg=key)
  for (a, b) in zip(again._state_tensors().values(), wide._state_tensors().values()): np.testing.assert_array_equal(a.numpy(), b.numpy())
  step(again), step(wide)  # and they train on identically
  for (a, b) in zip(again._state_tensors().values(), wide._state_tensors().values()): np.testing.assert_array_equal(a.numpy(), b.numpy())
