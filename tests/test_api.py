"""The public API at the package top (`tinydqn.train`, `load`, ...) and `tinydqn.DQN`, the Stable-Baselines3-shaped
layer over it: SB3's README example runs with its import changed, learn is train, save/load keep every action."""
import ast
import csv
import inspect
import re
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import tinydqn
from conftest import make_agent
from tinydqn import DQN, UserError
from tinydqn.errors import Interrupted

# The facade adds no device-specific code: the training it runs is tested on every device elsewhere.
pytestmark = pytest.mark.cpu_stage

ROOT = Path(__file__).resolve().parent.parent

# SB3's README example (stable_baselines3 DQN, CartPole) with the import changed and the env given by its id, as
# README.md shows it: the README's Python block is the example this file runs.
README_EXAMPLE = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]

# Seconds, not minutes: a small net, single gradient steps, two short evaluations and snapshots every 400 steps.
SMALL = dict(seed=2, learning_starts=200, train_freq=4, gradient_steps=1, batch_size=32, net_arch=(32,),
             target_update_interval=100, learning_rate=2e-3, learning_rate_schedule="constant", exploration_final_eps=0.2,
             eval_freq=400, eval_episodes=2, checkpoint_freq=400, stop_at_return=None, stop_eval_episodes=0)
STEPS = 1200


def rows(path: Path) -> list[dict]:
  """A CSV's rows without its wall-clock columns."""
  with open(path) as f: return [{k: v for k, v in row.items() if not k.endswith("time_s") and k != "sps"} for row in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
  for name in ("metrics.csv", "eval.csv"): assert rows(a / name) == rows(b / name), name


def assert_same_weights(agent_a, agent_b) -> None:
  a, b = agent_a.state_arrays(), agent_b.state_arrays()
  assert a.keys() == b.keys()
  for key in a: np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def observations(n: int = 64, seed: int = 0) -> np.ndarray:
  """States a CartPole policy meets: random play from a few resets."""
  env, out = gym.make("CartPole-v1"), []
  obs, _ = env.reset(seed=seed)
  rng = np.random.default_rng(seed)
  while len(out) < n:
    out.append(obs)
    obs, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
    if terminated or truncated: obs, _ = env.reset()
  return np.stack(out)


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> DQN:
  return DQN("MlpPolicy", "CartPole-v1", run_dir=tmp_path_factory.mktemp("facade") / "run", **SMALL).learn(STEPS)


def test_sb3_readme_example_runs_with_the_import_changed(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # it saves its model, and learn its run directory (under runs/), here
  namespace: dict = {}
  exec(compile(README_EXAMPLE, "README example", "exec"), namespace)
  assert len(README_EXAMPLE.splitlines()) <= 15
  assert namespace["action"] in (0, 1) and namespace["_states"] is None
  assert (tmp_path / "dqn_cartpole.json").is_file() and (tmp_path / "dqn_cartpole.safetensors").is_file()
  (run,) = (tmp_path / "runs").iterdir()
  assert (run / "summary.json").is_file() and namespace["model"].config.total_timesteps == 2_000


def test_learn_is_train_of_make_config(learned, tmp_path):
  """The same code path: the config make_config gives, and the same rows and weights as train() writes."""
  config = tinydqn.make_config("CartPole-v1", total_timesteps=STEPS, **SMALL)
  reference = tinydqn.train(config, tmp_path / "ref", progress=False)
  assert learned.config == config and learned.result.steps == STEPS
  assert_same_run(reference.run_dir, learned.run_dir)
  assert_same_weights(reference.agent, learned.policy.agent)


def test_save_and_load_give_the_same_actions(learned, tmp_path):
  batch = observations()
  actions = learned.predict(batch, deterministic=True)[0]
  assert len(set(actions.tolist())) == 2  # a policy that plays both actions: equal actions are not a coincidence
  for stem in ("model", "model_lr0.002"):  # a dot in the name stays in the name
    learned.save(tmp_path / stem)
    assert (tmp_path / f"{stem}.json").is_file() and (tmp_path / f"{stem}.safetensors").is_file()
    model, policy = DQN.load(tmp_path / stem), tinydqn.load(tmp_path / stem)
    np.testing.assert_array_equal(model.predict(batch, deterministic=True)[0], actions)
    np.testing.assert_array_equal(policy.predict(batch), actions)
    for loaded in (model.policy, policy): np.testing.assert_array_equal(loaded.q_values(batch), learned.policy.q_values(batch))
  assert DQN.load(tmp_path / "model").config == learned.config
  # a run directory loads as its final policy, which is what learn handed over
  np.testing.assert_array_equal(tinydqn.load(learned.run_dir).predict(batch), actions)
  assert tinydqn.load(learned.run_dir, best=True).step in [int(r["step"]) for r in rows(learned.run_dir / "eval.csv")]


def test_one_observation_and_a_batch_agree(learned):
  batch = observations(16)
  actions = learned.policy.predict(batch)
  assert actions.shape == (16,) and actions.dtype.kind == "i"
  for obs, action in zip(batch, actions):
    one = learned.policy.predict(obs)
    assert isinstance(one, int) and one == action == learned.predict(obs, deterministic=True)[0]
  assert learned.policy.predict(batch[:1]).shape == (1,)  # a batch of one stays a batch
  # the greedy action is the one evaluation plays
  assert all(int(learned.policy.agent.q_values(obs[None]).argmax()) == a for obs, a in zip(batch, actions))


def test_predict_not_deterministic_explores_with_the_final_epsilon(learned):
  obs = observations(1)[0]
  greedy = learned.policy.predict(obs)
  actions = learned.predict(np.repeat(obs[None], 4000, axis=0), deterministic=False)[0]
  # a random action (probability ε = 0.2) is the other one of two half the time
  assert 0.07 < np.mean(actions != greedy) < 0.13
  assert isinstance(learned.predict(obs)[0], int)  # SB3's default is deterministic=False


def test_learn_stopped_by_a_signal_continues_exactly_on_the_next_learn(learned, tmp_path, monkeypatch):
  import tinydqn.train as training
  original = training.linear_epsilon
  def signal_once(config, step):
    if step == 600: signal.raise_signal(signal.SIGINT)  # as Ctrl-C would: the loop snapshots this step and stops
    return original(config, step)
  monkeypatch.setattr(training, "linear_epsilon", signal_once)
  model = DQN("CartPole-v1", run_dir=tmp_path / "run", **SMALL)
  with pytest.raises(Interrupted): model.learn(STEPS)
  monkeypatch.undo()
  assert model.policy is None
  with pytest.raises(UserError, match="continues to its own total_timesteps 1200"): model.learn(2 * STEPS)
  model.learn(STEPS)  # resume(run_dir): the run that was never interrupted
  assert_same_run(learned.run_dir, model.run_dir)
  assert_same_weights(learned.policy.agent, model.policy.agent)


@pytest.mark.parametrize("make, message", [
  (lambda: DQN("MultiInputPolicy", "CartPole-v1"), "unknown policy 'MultiInputPolicy'"),
  (lambda: DQN("MlpPolicy", gym.make("CartPole-v1")), r"takes an environment id.*DQN\('MlpPolicy', 'CartPole-v1'\)"),
  (lambda: DQN("MlpPolicy"), "needs an environment id"),
  (lambda: DQN("CnnPolicy", "CartPole-v1"), r"CnnPolicy does not fit CartPole-v1.*shape \(4,\).*'MlpPolicy'"),
  (lambda: DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[64, 64])), "no policy_kwargs.*net_arch="),
  (lambda: DQN("MlpPolicy", "CartPole-v1", learning_rat=1e-3), "unknown config field.*learning_rat"),
  (lambda: DQN("MlpPolicy", "CartPol-v1"), "unknown environment 'CartPol-v1'"),
  (lambda: DQN("CartPole-v1").predict(np.zeros(4)), r"no policy yet: call learn\(total_timesteps\) or DQN.load"),
  (lambda: DQN.load("no/such/model"), "checkpoint not found"),
], ids=["policy", "env-object", "no-env", "cnn-on-vectors", "policy_kwargs", "config-field", "env-id", "predict-first",
        "load-missing"])
def test_bad_input_is_a_user_error_that_says_what_to_do(make, message):
  with pytest.raises(UserError, match=message): make()


def test_what_a_model_cannot_do_after_learn_or_load_is_a_user_error(learned, tmp_path):
  with pytest.raises(UserError, match="learned already .*ended at step 1200.*new DQN"): learned.learn(STEPS)
  learned.save(tmp_path / "m")
  with pytest.raises(UserError, match="learned already .*loaded"): DQN.load(tmp_path / "m").learn(STEPS)
  with pytest.raises(UserError, match=r"shape \(4,\) \(one\) or \(n, 4\)"): learned.predict(np.zeros(3))


def test_the_package_top_is_cheap_to_import_and_names_the_api(small_config):
  code = ("import sys, tinydqn; assert 'tinygrad' not in sys.modules, 'tinygrad started'; "
          "import tinydqn.train as t; assert callable(tinydqn.train) and t.save_snapshot; "
          "from tinydqn import train, resume, evaluate, make_config, make_env, load, DQN, Policy")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
  # tinydqn.train and tinydqn.evaluate are the submodules, and calling them calls their functions
  assert "device" in inspect.signature(tinydqn.train).parameters
  result = tinydqn.evaluate(make_agent(small_config), tinydqn.make_env("CartPole-v1"), 2, 0)
  assert len(result.returns) == 2 and tinydqn.evaluate.EvalResult is type(result)


def package_imports() -> dict[str, set[str]]:
  """Each tinydqn module's imports of other tinydqn modules, at module level and inside functions (what runs when
  called is an import too); not those under TYPE_CHECKING, which never run."""
  graph = {}
  for path in (ROOT / "tinydqn").glob("*.py"):
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
      if id(node) in typing_only: continue
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinydqn."): found.add(node.module.split(".")[1])
      elif isinstance(node, ast.ImportFrom) and node.module == "tinydqn": found |= {a.name for a in node.names}
      elif isinstance(node, ast.Import): found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tinydqn.")}
    graph[path.stem] = found - {path.stem}
  return graph


def test_imports_run_one_way():
  """No import circle in the package: the network modules build up dense <- conv, heads <- networks."""
  graph = package_imports()
  assert not graph["dense"] & {"conv", "heads", "networks"}
  assert "networks" not in graph["conv"] | graph["heads"] and {"conv", "dense", "heads"} <= graph["networks"]
  done: set[str] = set()
  def visit(module: str, path: tuple[str, ...]) -> None:
    assert module not in path, f"import circle: {' -> '.join(path + (module,))}"
    if module in done or module not in graph: return
    for imported in graph[module]: visit(imported, path + (module,))
    done.add(module)
  for module in graph: visit(module, ())
