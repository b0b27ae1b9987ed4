"""Seeded end-to-end runs: determinism, and learning clearly above a random policy."""
import csv

import numpy as np
import pytest

from tinydqn.agent import DQNAgent
from tinydqn.heads import CategoricalHead
from tinydqn.buffers import ReplayBuffer
from tinydqn.envs import last_observations
from tinydqn.config import Config, make_config
from tinydqn.train import linear_epsilon, train
from tinydqn.logger import WALL_CLOCK_COLUMNS

FAST = dict(double_q=False, learning_rate_schedule="constant", total_timesteps=1500, learning_starts=200, train_freq=4, gradient_steps=1, batch_size=32,
            net_arch=(32, 32), eval_freq=500, eval_episodes=3, target_update_interval=100)


def deterministic_rows(path):
  with open(path) as f: return [{k: v for k, v in row.items() if k not in WALL_CLOCK_COLUMNS} for row in csv.DictReader(f)]


@pytest.mark.cpu_stage  # off the CPU, test_devices' interrupt/resume test compares two same-seed runs
def test_same_seed_same_run(tmp_path):
  runs = [train(make_config("CartPole-v1", seed=7, **FAST), tmp_path / f"r{i}", progress=False) for i in range(2)]
  for name in ("metrics.csv", "eval.csv"):
    assert deterministic_rows(runs[0].run_dir / name) == deterministic_rows(runs[1].run_dir / name)
  other = train(make_config("CartPole-v1", seed=8, **FAST), tmp_path / "r2", progress=False)
  assert deterministic_rows(other.run_dir / "metrics.csv") != deterministic_rows(runs[0].run_dir / "metrics.csv")


def test_epsilon_schedule():
  config = make_config("CartPole-v1", total_timesteps=1000, learning_starts=10, exploration_fraction=0.5, exploration_initial_eps=1.0,
                       exploration_final_eps=0.1)
  assert [round(linear_epsilon(config, s), 6) for s in (0, 250, 500, 900)] == [1.0, 0.55, 0.1, 0.1]


# A short CartPole run. Explicit fields, not the preset, so tuning the preset cannot change the tests below.
SHORT_CARTPOLE = dict(env_id="CartPole-v1", seed=0, total_timesteps=12_000, learning_starts=1000, train_freq=4,
                      gradient_steps=1, batch_size=64, learning_rate=1e-3, net_arch=(64, 64),
                      target_update_interval=250, exploration_fraction=0.3, eval_freq=0, eval_episodes=10)


@pytest.mark.slow
def test_cartpole_learns_clearly_above_random(tmp_path):
  """A random CartPole policy averages about 22; a short seeded run must reach several times that."""
  # Seeds 0, 1, 2 reach 113, 119, 199 on this machine.
  result = train(Config(**SHORT_CARTPOLE), tmp_path / "run", progress=False)
  assert result.final_eval.mean_return >= 100, result.final_eval


@pytest.mark.slow
def test_every_rainbow_component_together_learns_cartpole(tmp_path):
  """The same run with n-step returns, prioritized replay, dueling, noisy nets and C51 all on (and Rainbow's Adam
  ε): the components, each tested alone elsewhere, must also learn together."""
  # Seeds 0-4 reach 122, 130, 138, 148, 121 on this machine.
  rainbow = dict(n_step=3, prioritized=True, alpha=0.5, beta=0.4, dueling=True, noisy=True, distributional=True,
                 v_min=0.0, v_max=100.0, double_q=True, adam_eps=1.5e-4)
  result = train(Config(**SHORT_CARTPOLE, **rainbow), tmp_path / "run", progress=False)
  agent = result.agent  # every component really on: C51's support, noisy layers, a value head, PER's one step per call
  assert isinstance(agent.head, CategoricalHead) and agent.online.noisy_layers() and agent.head.value is not None
  assert agent.fuse == 1
  assert result.final_eval.mean_return >= 100, result.final_eval


def test_final_observation_of_a_reset_env_is_stored():
  next_obs = np.array([[1.0], [2.0], [3.0]])
  infos = {"final_obs": np.array([None, np.array([9.0]), None], dtype=object)}
  real = last_observations(next_obs, infos, np.array([False, True, False]))
  assert real.tolist() == [[1.0], [9.0], [3.0]] and next_obs.tolist() == [[1.0], [2.0], [3.0]]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "FrozenLake-v1"])  # FrozenLake: one-hot observations, infos
def test_lean_vector_env_steps_as_gymnasiums_does(env_id):
  """make_vector_env's shorter step returns what Gymnasium's SyncVectorEnv returns for the same envs and actions:
  observations, rewards, ends, and infos (final observations of reset envs, each env's own info) through resets."""
  from functools import partial
  from gymnasium.vector import AutoresetMode, SyncVectorEnv
  from tinydqn.envs import make_env, make_vector_env
  lean = make_vector_env(env_id, 3)
  stock = SyncVectorEnv([partial(make_env, env_id) for _ in range(3)], autoreset_mode=AutoresetMode.SAME_STEP, copy=False)
  assert type(lean) is not SyncVectorEnv and np.array_equal(lean.reset(seed=5)[0], stock.reset(seed=5)[0])
  actions, ends = np.random.default_rng(0).integers(lean.single_action_space.n, size=(300, 3)), 0
  for a in actions:
    (lean_obs, *lean_rest, lean_info), (stock_obs, *stock_rest, stock_info) = lean.step(a), stock.step(a)
    assert np.array_equal(lean_obs, stock_obs) and all(np.array_equal(x, y) for x, y in zip(lean_rest, stock_rest))
    assert lean_info.keys() == stock_info.keys()
    for key in lean_info:
      if key == "final_obs":
        assert all((x is None and y is None) or np.array_equal(x, y) for x, y in zip(lean_info[key], stock_info[key]))
      elif key != "final_info": assert np.array_equal(lean_info[key], stock_info[key]), key
    ends += int(stock_rest[1].sum() + stock_rest[2].sum())
  assert ends >= 10  # the comparison went through many resets


@pytest.mark.parametrize("num_envs", [1, 4])
def test_stored_transitions_chain_into_each_other(tmp_path, num_envs):
  """What the loop stores is the trajectory the envs took: within an episode each transition starts where the one
  before it (of that env) ended. The vector env reuses its observation array from step to step, so a stored or
  kept observation that aliased it would break the chain."""
  from tinydqn.snapshot import load_latest_snapshot
  config = make_config("CartPole-v1", num_envs=num_envs, **{**FAST, "total_timesteps": 600, "checkpoint_freq": 400})
  train(config, tmp_path / "run", progress=False)
  replay = load_latest_snapshot(tmp_path / "run" / "checkpoints").replay  # the memory as it was at step 400
  obs, next_obs = replay["obs"][:400].reshape(-1, num_envs, 4), replay["next_obs"][:400].reshape(-1, num_envs, 4)
  done = (replay["terminated"].astype(bool) | replay["truncated"].astype(bool))[:400].reshape(-1, num_envs)
  assert done[:-1].any() and not (obs == next_obs).all(axis=2).any()  # episodes ended; every step moved the cart
  chained = ~done[:-1]  # (t, env) pairs whose next transition continues the same episode
  np.testing.assert_array_equal(obs[1:][chained], next_obs[:-1][chained])
  assert not np.array_equal(obs[1:][done[:-1]], next_obs[:-1][done[:-1]])  # a new episode starts elsewhere


@pytest.mark.parametrize("num_envs", [1, 4])
def test_updates_per_env_step_do_not_depend_on_num_envs(tmp_path, monkeypatch, num_envs):
  calls = {"minibatch": 0, "sync": 0}  # one minibatch per gradient step, fused into one jitted call or not
  original_sample, original_sync = ReplayBuffer.sample_into, DQNAgent.sync_target
  def count(name, fn):
    def wrapped(self, *args):
      calls[name] += 1
      return fn(self, *args)
    return wrapped
  monkeypatch.setattr(ReplayBuffer, "sample_into", count("minibatch", original_sample))
  monkeypatch.setattr(DQNAgent, "sync_target", count("sync", original_sync))
  config = make_config("CartPole-v1", num_envs=num_envs, **{**FAST, "total_timesteps": 400, "learning_starts": 100,
                                                            "train_freq": 10, "gradient_steps": 2,
                                                            "target_update_interval": 50})
  result = train(config, tmp_path / "run", progress=False)
  assert calls == {"minibatch": 2 * 30, "sync": 8}  # trains at steps 110..400, syncs at 50..400
  rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
  assert rows and all(int(r["episodic_length"]) >= 8 for r in rows)  # CartPole cannot end sooner
  assert sum(int(r["episodic_length"]) for r in rows) <= 400


def test_schedules_stop_at_their_end_when_num_envs_overshoots_the_total(tmp_path, monkeypatch, capsys):
  from tinydqn.cli import main
  from tinydqn.train import beta_at, learning_rate_at
  config = make_config("CartPole-v1", total_timesteps=1001, num_envs=4, learning_rate_schedule="linear",
                       prioritized=True, exploration_fraction=1.0)
  assert learning_rate_at(config, 1004) == 0.0 and beta_at(config, 1004) == 1.0  # was −3e-7 (gradient ascent)
  assert linear_epsilon(config, 1004) == pytest.approx(config.exploration_final_eps)
  rates = []
  monkeypatch.setattr(DQNAgent, "set_learning_rate", lambda self, lr: rates.append(lr))
  assert main(["train", "--run-dir", str(tmp_path / "run"), "--total-timesteps", "1001", "--num-envs", "4",
               "--learning-starts", "500", "--net-arch", "8", "--eval-freq", "0", "--eval-episodes", "1", "--quiet",
               "--learning-rate-schedule", "linear"]) == 0
  assert rates and min(rates) >= 0.0
  assert "Done: 1,004 env steps" in capsys.readouterr().out  # the steps taken, not total_timesteps
