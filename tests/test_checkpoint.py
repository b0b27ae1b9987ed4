"""Checkpoints round-trip to identical actions, loaded in place so already-captured jits see them."""
import json

import numpy as np
import pytest

from conftest import filled_buffer, make_agent, params_numpy
from tinydqn.checkpoint import load_checkpoint, save_checkpoint
from tinydqn.errors import UserError

OBS = np.random.default_rng(5).normal(size=(64, 4)).astype(np.float32)


def trained_agent(config, **kw):
  agent = make_agent(config, seed=1, **kw)
  rng, buf = np.random.default_rng(0), filled_buffer()
  for _ in range(5):
    buf.sample_into(agent.batch, rng)
    agent.update()
  return agent


@pytest.mark.parametrize("host_views", [pytest.param(True, marks=pytest.mark.cpu_only), False])
def test_round_trip_gives_identical_actions_through_captured_jit(tmp_path, small_config, host_views):
  source = trained_agent(small_config.replace(dueling=True), host_views=host_views)
  save_checkpoint(source, 123, (4,), np.dtype(np.float32), tmp_path / "ckpt")
  agent = make_agent(small_config.replace(dueling=True), seed=99, host_views=host_views)
  for _ in range(3): agent.q_values(OBS)  # the acting jit has captured the old weights' buffers
  before = agent.q_values(OBS).argmax(1)
  ckpt = load_checkpoint(tmp_path / "ckpt.json")
  agent.load_state_dict(ckpt.arrays)
  assert ckpt.step == 123 and ckpt.config == small_config.replace(dueling=True) and ckpt.n_actions == 2
  np.testing.assert_array_equal(agent.q_values(OBS), source.q_values(OBS))
  assert (agent.q_values(OBS).argmax(1) == source.q_values(OBS).argmax(1)).all()
  assert not (before == source.q_values(OBS).argmax(1)).all()  # the check above could have failed


def test_training_continues_identically_after_load(tmp_path, small_config):
  """Optimizer state (Adam moments and step count) and the target net travel with the weights."""
  source = trained_agent(small_config)
  save_checkpoint(source, 5, (4,), np.dtype(np.float32), tmp_path / "ckpt")
  restored = load_checkpoint(tmp_path / "ckpt").make_agent()
  for agent in (source, restored):
    rng, buf = np.random.default_rng(7), filled_buffer(seed=3)
    for _ in range(4):
      buf.sample_into(agent.batch, rng)
      agent.update()
  for a, b in zip(params_numpy(source.online) + params_numpy(source.target),
                  params_numpy(restored.online) + params_numpy(restored.target)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("saved_fused", [True, False])
def test_a_state_saved_with_the_other_optimizer_layout_continues_the_same(monkeypatch, small_config, saved_fused):
  """Large networks keep the optimizer's moments per parameter, small ones in one flat buffer; a state written in
  one layout (e.g. before the choice went by size) loads into the other and trains on as it would have."""
  import tinydqn.agent
  def agent_with(fused: bool, seed: int):
    monkeypatch.setattr(tinydqn.agent, "FUSED_OPTIMIZER_MAX_PARAMS", 10**9 if fused else 0)
    return make_agent(small_config, seed=seed)
  source = agent_with(saved_fused, seed=1)
  rng, buf = np.random.default_rng(0), filled_buffer()
  for _ in range(3):
    buf.sample_into(source.batch, rng)
    source.update()
  state = {k: v.numpy() for k, v in source.state_dict().items()}
  assert ("optimizer.m.1" in state) != saved_fused
  restored = agent_with(not saved_fused, seed=99)
  restored.load_state_dict(state)
  for agent in (source, restored):
    rng, buf = np.random.default_rng(7), filled_buffer(seed=3)
    for _ in range(3):
      buf.sample_into(agent.batch, rng)
      agent.update()
  for a, b in zip(params_numpy(source.online), params_numpy(restored.online)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loading_an_incompatible_state_is_refused(tmp_path, small_config):
  save_checkpoint(trained_agent(small_config), 1, (4,), np.dtype(np.float32), tmp_path / "c")
  other = make_agent(small_config.replace(net_arch=(8,)))
  with pytest.raises(ValueError): other.load_state_dict(load_checkpoint(tmp_path / "c").arrays)


def test_missing_and_corrupt_checkpoints_are_user_errors(tmp_path, small_config):
  with pytest.raises(UserError, match="not found"): load_checkpoint(tmp_path / "nope.json")
  with pytest.raises(UserError, match="no checkpoint"): load_checkpoint(tmp_path)
  meta = save_checkpoint(trained_agent(small_config), 1, (4,), np.dtype(np.float32), tmp_path / "c")
  weights = meta.with_suffix(".safetensors")
  weights.write_bytes(weights.read_bytes()[:100])
  with pytest.raises(UserError, match="cannot read checkpoint"): load_checkpoint(meta)
  meta.write_text("{not json")
  with pytest.raises(UserError, match="cannot read checkpoint"): load_checkpoint(meta)
  meta.write_text(json.dumps({"format": 1, "weights": "gone.safetensors"}))
  with pytest.raises(UserError, match="missing"): load_checkpoint(meta)


def test_another_format_version_is_one_line_naming_both(tmp_path, small_config):
  from tinydqn.snapshot import load_latest_snapshot, save_snapshot
  meta = save_checkpoint(make_agent(small_config), 1, (4,), np.dtype(np.float32), tmp_path / "c")
  meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 2}))
  with pytest.raises(UserError, match=r"format version 2; .* reads version 1$"): load_checkpoint(meta)
  agent, memory = make_agent(small_config), filled_buffer()
  snap = save_snapshot(tmp_path / "ckpts", 8, agent, memory, {}, include_replay=False, keep=2)
  manifest = snap / "manifest.json"
  manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 2}))
  with pytest.raises(UserError, match=r"snapshot .*step_000000000008 has format version 2; .* reads version 1$"):
    load_latest_snapshot(tmp_path / "ckpts")
