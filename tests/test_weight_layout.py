"""Dense weights stored [in, out] on the CPU (`tinydqn.weight_layout`): same values, same saved state as [out, in]."""
import numpy as np
import pytest
from tinygrad import Tensor

from conftest import filled_buffer, make_agent
from tinydqn import agent as agent_module
from tinydqn import dense
from tinydqn.dense import Linear
from tinydqn.networks import empty_noise, factorized_noise
from tinydqn.weight_layout import inputs_first, output_padding, transpose_stored


def test_rule_stores_inputs_first_on_the_cpu_when_the_vector_tile_divides_the_outputs(monkeypatch):
  assert inputs_first(4, 256, "CPU") and inputs_first(120, 64, "CPU")
  assert not inputs_first(120, 84, "CPU") and not inputs_first(256, 2, "CPU")  # CleanRL's 84, an output layer
  assert inputs_first(1024, 1024, "CPU") and not inputs_first(3136, 512, "CPU")  # the Nature CNN's acting reads it
  assert not inputs_first(4, 256, "CL") and not inputs_first(4, 256, "CUDA")
  monkeypatch.setenv("TINYDQN_WIDE", "0")
  assert not inputs_first(4, 256, "CPU")


def test_rule_pads_outputs_the_vector_tile_does_not_divide_on_the_cpu_only(monkeypatch):
  assert output_padding(153, "CPU") == 7 and output_padding(84, "CPU") == 4  # C51 on Acrobot, CleanRL's layer
  assert output_padding(256, "CPU") == 0 and output_padding(3, "CPU") == 0  # divided; an output per action
  assert output_padding(153, "CL") == 0
  monkeypatch.setenv("TINYDQN_WIDE", "0")
  assert output_padding(153, "CPU") == 0


@pytest.mark.parametrize("stored_inputs_first", [False, True])
@pytest.mark.parametrize("padding", [0, 3])
def test_stored_product_gives_the_layers_outputs_and_gradients(stored_inputs_first, padding):
  """A layer whose product runs on zero-padded columns, backward on a transposed copy, computes x·W + b and its
  gradients with respect to x, W (in its stored layout) and b."""
  Tensor.manual_seed(3)
  layer = Linear(24, 21, stored_inputs_first, padding=padding)
  w = layer.weight.numpy()
  w_in_out = w if stored_inputs_first else w.T
  x_values = np.random.default_rng(0).normal(size=(5, 24)).astype(np.float32)
  upstream_values = np.random.default_rng(1).normal(size=(5, 21)).astype(np.float32)
  x, upstream = Tensor(x_values), Tensor(upstream_values)
  out = layer(x)
  assert out.shape == (5, 21)
  dx, dw, db = ((out * upstream).sum().gradient(x, layer.weight, layer.bias))
  np.testing.assert_allclose(out.numpy(), x_values @ w_in_out + layer.bias.numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx.numpy(), upstream_values @ w_in_out.T, rtol=1e-5, atol=1e-5)
  dw_in_out = x_values.T @ upstream_values
  np.testing.assert_allclose(dw.numpy(), dw_in_out if stored_inputs_first else dw_in_out.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(db.numpy(), upstream_values.sum(axis=0), rtol=1e-5, atol=1e-5)


@pytest.mark.cpu_only
@pytest.mark.parametrize("head", ["distributional", "quantiles"])
def test_padded_heads_train_as_unpadded_ones(small_config, monkeypatch, head):
  """C51 and QR-DQN heads (2 actions × 51 atoms, × 50 quantiles) pad their output layer on the CPU; an agent
  that does trains to the same state as one that does not, within float rounding."""
  config = small_config.replace(net_arch=(16, 8), **({"distributional": True} if head == "distributional" else {"quantiles": 50}))
  padded = make_agent(config)
  assert padded.online.head.advantage.padding > 0
  monkeypatch.setattr(dense, "output_padding", lambda out_features, device: 0)
  plain = make_agent(config)
  assert plain.online.head.advantage.padding == 0
  step(padded), step(plain)
  for (key, a), b in zip(padded._state_tensors().items(), plain._state_tensors().values()):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=key)


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
