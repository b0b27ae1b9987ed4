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
    assert isinstance(v, (bool, int, float, str, tuple)), (f.name, v)
    if isinstance(v, float): assert math.isfinite(v), (f.name, v)


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
  run = tmp_path_factory.mktemp("prop") / "run"
  assert main(["train", "--run-dir", str(run), "--total-timesteps", "200", "--learning-starts", "50",
               "--net-arch", "8", "--eval-freq", "0", "--eval-episodes", "1", "--quiet"]) == 0
  return run


def snapshot_of(run):
  return {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(FLAGS, TOKENS), max_size=5), st.sampled_from(["CartPole-v1", "Pendulum-v1", "nope-v0", ""]))
def test_any_train_arguments_never_touch_an_existing_run(existing_run, capsys, flags, env_id):
  before = snapshot_of(existing_run)
  argv = ["train", *([env_id] if env_id else []), "--run-dir", str(existing_run), *[x for pair in flags for x in pair]]
  code = main(argv)
  err = capsys.readouterr().err
  assert code == 2, (argv, err)
  assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("tinydqn: error: ")
  assert snapshot_of(existing_run) == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TOKENS, max_size=4), st.sampled_from(["--episodes", "--seed", "--json", "--bogus"]))
def test_any_eval_arguments_are_handled(existing_run, capsys, tokens, flag):
  before = snapshot_of(existing_run)
  code = main(["eval", str(existing_run / "missing"), flag, *tokens])
  err = capsys.readouterr().err
  assert code == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("tinydqn: error: ")
  assert snapshot_of(existing_run) == before
