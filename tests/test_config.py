"""Config validation, presets and their precedence."""
import dataclasses

import pytest

from tinydqn.config import Config, load_preset, make_config, preset_for_env, preset_names, presets_for
from tinydqn.errors import UserError


def test_every_field_is_documented():
  for f in dataclasses.fields(Config): assert f.metadata.get("help"), f.name


@pytest.mark.parametrize("name", preset_names())
def test_presets_are_valid_configs(name):
  values = load_preset(name)
  config = make_config(preset=name)
  if "env_id" in values: assert config.env_id == values["env_id"] and preset_for_env(config.env_id) == name
  for key, value in values.items(): assert getattr(config, key) == value


def test_a_modifier_preset_goes_on_top_of_the_env_preset():
  config = make_config("CartPole-v1", "rainbow", seed=3)
  cartpole, rainbow = load_preset("cartpole"), load_preset("rainbow")
  assert "env_id" not in rainbow and presets_for("CartPole-v1", "rainbow") == ["cartpole", "rainbow"]
  for key, value in {**cartpole, **rainbow, "seed": 3}.items(): assert getattr(config, key) == value
  assert make_config("CartPole-v0", "rainbow") == Config(env_id="CartPole-v0").replace(**rainbow)


def test_precedence_defaults_then_preset_then_overrides():
  config = make_config("CartPole-v1", learning_rate=0.5)
  assert config.learning_rate == 0.5 and config.batch_size == load_preset("cartpole")["batch_size"]
  assert make_config("CartPole-v0") == Config(env_id="CartPole-v0")  # no preset for this id: plain defaults
  assert make_config("CartPole-v0", "cartpole").env_id == "CartPole-v0"  # a preset applied to another id


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(buffer_size=-1), dict(gamma=-0.1), dict(gamma=1.01),
                                 dict(tau=0.0), dict(learning_rate=0.0), dict(exploration_final_eps=2.0),
                                 dict(net_arch=()), dict(optimizer="sgd"), dict(learning_starts=50_000),
                                 dict(batch_size=64, buffer_size=10), dict(learning_rate_schedule="cosine")])
def test_invalid_values_are_refused(bad):
  with pytest.raises(UserError, match="invalid config"): Config(**bad)


def test_unknown_fields_and_round_trip():
  with pytest.raises(UserError, match="unknown config field"): Config().replace(lr=1.0)
  config = make_config("CartPole-v1", dueling=True)
  assert Config.from_dict(config.to_dict()) == config
