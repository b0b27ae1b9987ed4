"""Property-based: no input, however odd, ends in a traceback or changes an existing run."""
import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tinydqn.cli import main
from tinydqn.config import Config
from tinydqn.errors import UserError

pytestmark = pytest.mark.cpu_stage  # what these tests check does not depend on the device

FIELDS = [f.name for f in dataclasses.fields(Config)]
ANY_VALUE = st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                      st.text(max_size=8), st.none(), st.lists(st.integers(-5, 600), max_size=4).map(tuple))
TOKENS = st.one_of(st.sampled_from(["0", "-1", "1e9", "nan", "inf", "-0.5", "2", "x", "", "256,256", "1,,2",
                                    "adam", "mse", "true"]),
                   st.text(max_size=6).filter(lambda t: t not in ("-h", "--help")))  # help exits 0, rightly
FLAGS = st.sampled_from(["--" + f.replace("_", "-") for f in FIELDS if f != "env_id"] +
                        ["--preset", "--device", "--seed", "--no-double-q", "--double-q", "--bogus", "-x"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), ANY_VALUE, max_size=4))
def test_any_config_values_are_accepted_or_a_user_error(values):
  try:
    config = Config().replace(**values)
  except UserError as e:
    assert str(e).startswith("invalid config") and "\n" not in str(e)
    return
  for f in dataclasses.fields(config):  # what is accepted has the declared type and a finite value
    v = getattr(config, f.name)
    assert isinstance(v, (bool, int, float, str, tuple)) or (v is None and f.name == "stop_at_return"), (f.name, v)
    if isinstance(v, float): assert math.isfinite(v), (f.name, v)


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
  run = tmp_path_factory.mktemp("prop") / "run"
  assert main(["train", "--run-dir", str(run), "--total-timesteps", "200", "--learning-starts", "50",
               "--net-arch", "8", "--eval-freq", "0", "--eval-episodes", "1", "--quiet"]) == 0
  return run


def snapshot_of(run):
  return {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# Well-formed flags: with them a generated command gets past argparse (and, but for the preset, the config checks),
# so the later layers (device, run directory, environment) are reached too.
WELL_FORMED_FLAGS = st.lists(st.sampled_from([("--seed", "3"), ("--net-arch", "8"), ("--learning-rate", "0.01"),
                                              ("--total-timesteps", "500"), ("--batch-size", "16"),
                                              ("--preset", "cartpol")]), max_size=3)
BAD_ENVS = ("Pendulum-v1", "nope-v0")  # only these get --force: a valid env with --force would train


def validation_layer(message: str) -> str:
  """Which check of `tinydqn train` stopped a command, from its one-line error (in the order they run)."""
  for layer, fragment in (("preset", "unknown preset"), ("config", "invalid config"), ("device", "is not usable here"),
                          ("run directory", "already exists"), ("environment", "unknown environment"),
                          ("environment", "action space")):
    if fragment in message: return layer
  return "arguments"


def test_train_arguments_reach_every_check_and_never_touch_an_existing_run(existing_run, capsys):
  layers: dict[str, int] = {}

  @settings(max_examples=300, deadline=None, derandomize=True)
  @given(st.one_of(st.lists(st.tuples(FLAGS, TOKENS), max_size=5), WELL_FORMED_FLAGS),
         st.sampled_from(["CartPole-v1", "", *BAD_ENVS]), st.sampled_from([None, "CPU", "NOPE"]), st.booleans())
  def check(flags, env_id, device, force):
    before = snapshot_of(existing_run)
    argv = ["train", *([env_id] if env_id else []), "--run-dir", str(existing_run),
            *(["--force"] if force and env_id in BAD_ENVS else []), *(["--device", device] if device else []),
            *[x for pair in flags for x in pair]]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("tinydqn: error: ")
    assert snapshot_of(existing_run) == before
    layer = validation_layer(err.strip().splitlines()[-1])
    layers[layer] = layers.get(layer, 0) + 1

  check()
  print("inputs stopped per check:", layers)
  for layer in ("arguments", "preset", "config", "device", "run directory", "environment"):
    assert layers.get(layer, 0) >= 5, layers  # every layer is exercised, not only argparse


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TOKENS, max_size=4), st.sampled_from(["--episodes", "--seed", "--json", "--bogus"]))
def test_any_eval_arguments_are_handled(existing_run, capsys, tokens, flag):
  before = snapshot_of(existing_run)
  code = main(["eval", str(existing_run / "missing"), flag, *tokens])
  err = capsys.readouterr().err
  assert code == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("tinydqn: error: ")
  assert snapshot_of(existing_run) == before
