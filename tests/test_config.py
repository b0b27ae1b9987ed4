"""Config validation, presets and their precedence."""
import dataclasses

import pytest

import tomllib

import tinydqn.config
from tinydqn.config import Config, load_preset, make_config, modifier_tables, preset_for_env, preset_names, presets_for
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
  tuned = modifier_tables("cartpole").get("rainbow", {})  # CartPole's own Rainbow values go last
  for key, value in {**cartpole, **rainbow, **tuned, "seed": 3}.items(): assert getattr(config, key) == value
  assert make_config("CartPole-v0", "rainbow") == Config(env_id="CartPole-v0").replace(**rainbow)


TOY = {"toy": 'env_id = "Toy-v0"\nlearning_rate = 1.0\n[mod]\nlearning_rate = 2.0\nbatch_size = 7\n',
       "mod": "learning_rate = 3.0\ndueling = true\nbatch_size = 5\n"}


def test_an_env_preset_table_tunes_a_modifier_for_that_env(monkeypatch):
  monkeypatch.setattr(tinydqn.config, "preset_names", lambda: sorted(TOY))
  monkeypatch.setattr(tinydqn.config, "_read_preset", lambda name: tomllib.loads(TOY[name]))
  assert load_preset("toy") == {"env_id": "Toy-v0", "learning_rate": 1.0}  # the table is not a field
  assert modifier_tables("toy") == {"mod": {"learning_rate": 2.0, "batch_size": 7}} and modifier_tables("mod") == {}
  config = make_config("Toy-v0", "mod")  # env preset, modifier, then the env preset's [mod] table
  assert (config.learning_rate, config.batch_size, config.dueling) == (2.0, 7, True)
  assert make_config("Toy-v0", "mod", learning_rate=4.0).learning_rate == 4.0  # overrides still win
  assert make_config("Toy-v0") == Config(env_id="Toy-v0", learning_rate=1.0)  # without the modifier: unused
  assert make_config("Other-v0", "mod") == Config(env_id="Other-v0", learning_rate=3.0, dueling=True, batch_size=5)


def test_shipped_modifier_tables_name_a_modifier_and_are_valid():
  for name in preset_names():
    for modifier, values in modifier_tables(name).items():
      assert modifier in preset_names() and "env_id" not in load_preset(modifier), (name, modifier)
      config = make_config(load_preset(name)["env_id"], modifier)
      for key, value in values.items(): assert getattr(config, key) == value


def test_precedence_defaults_then_preset_then_overrides():
  config = make_config("CartPole-v1", learning_rate=0.5)
  assert config.learning_rate == 0.5 and config.batch_size == load_preset("cartpole")["batch_size"]
  assert make_config("CartPole-v0") == Config(env_id="CartPole-v0")  # no preset for this id: plain defaults
  assert make_config("CartPole-v0", "cartpole").env_id == "CartPole-v0"  # a preset applied to another id


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(buffer_size=-1), dict(gamma=-0.1), dict(gamma=1.01),
                                 dict(tau=0.0), dict(learning_rate=0.0), dict(exploration_final_eps=2.0),
                                 dict(net_arch=()), dict(optimizer="sgd"), dict(adam_eps=0.0), dict(noisy_sigma0=0.0), dict(momentum=0.9),
                                 dict(optimizer="rmsprop_torch", momentum=1.0), dict(learning_starts=50_000),
                                 dict(batch_size=64, buffer_size=10), dict(learning_rate_schedule="cosine"),
                                 dict(munchausen=1.5), dict(munchausen=-0.1), dict(munchausen=0.9, munchausen_tau=0.0),
                                 dict(munchausen=0.9, munchausen_clip=0.0), dict(munchausen=0.9, double_q=True),
                                 dict(munchausen=0.9, distributional=True)])
def test_invalid_values_are_refused(bad):
  with pytest.raises(UserError, match="invalid config"): Config(**bad)


def test_unknown_fields_and_round_trip():
  with pytest.raises(UserError, match="unknown config field"): Config().replace(lr=1.0)
  config = make_config("CartPole-v1", dueling=True)
  assert Config.from_dict(config.to_dict()) == config
