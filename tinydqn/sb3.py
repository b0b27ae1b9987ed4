"""`tinydqn.DQN`: Stable-Baselines3's DQN calls, as a thin layer over `make_config`, `train`, `resume` and `load`.

    model = DQN("MlpPolicy", "CartPole-v1", seed=1)   # or DQN("CartPole-v1", ...); keywords are config fields
    model.learn(total_timesteps=2_000)                  # train(make_config(...)) into model.run_dir
    action, _states = model.predict(obs, deterministic=True)
    model.save("dqn_cartpole"); model = DQN.load("dqn_cartpole")

The policy string is checked, not configured: "MlpPolicy" asks that the config build an MLP torso for the env's
observations, "CnnPolicy" a convolutional one (the Atari and MinAtar presets choose theirs); `network=` picks.
The hyperparameters are the env's tinydqn preset (or `preset=`) and the keywords, most named as SB3 names them
(learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq, gradient_steps,
target_update_interval, exploration_fraction, exploration_initial_eps, exploration_final_eps, max_grad_norm).
`learn` trains a run as `tinydqn.train` does, into `run_dir` (default: a new folder under runs/, as the CLI's),
with its logs, evaluations, best checkpoint and stop once solved. A learn stopped by Ctrl-C (or SIGTERM) leaves a
snapshot: calling learn again with the same total_timesteps continues it with `resume`, bit for bit.

What it does not do, where SB3 does:
- env objects: it takes an environment id and makes its own environments (training, vector, evaluation) from it.
- SB3's default hyperparameters: tinydqn's preset for the env applies; seed defaults to 0, not a random one.
- policy_kwargs: pass net_arch=, dueling=, noisy= ... as keywords.
- callbacks: none; the run keeps checkpoints/best.*, stops at stop_at_return, and logs metrics.csv and eval.csv.
- verbose, tensorboard_log, log_interval, tb_log_name: learn(progress_bar=True); TensorBoard events (with tensorboardX)
  go to run_dir/tb.
- schedules as callables, train_freq in episodes: config fields instead (learning_rate_schedule="linear").
- learn after a finished learn (SB3 continues training): a UserError; train a new model with a larger budget.
- learn on a loaded model: a UserError; an interrupted run continues with `tinydqn.resume(run_dir)`.
- predict before learn or load (SB3 acts with the initial weights): a UserError.
- recurrent state: predict's state and episode_start are accepted and ignored; the state returned is None.
- .zip files, get_parameters/set_parameters, save_replay_buffer, model.env: save writes a tinydqn checkpoint (.json and
  .safetensors); the run's snapshots hold the replay memory.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tinydqn.config import Config, make_config
from tinydqn.conv import network_for
from tinydqn.envs import describe, make_env
from tinydqn.errors import Interrupted, UserError
from tinydqn.policy import Policy, load
from tinydqn.rundir import default_run_dir
from tinydqn.train import TrainResult, resume, train

POLICIES = ("MlpPolicy", "CnnPolicy")
# SB3 arguments people pass out of habit, with where tinydqn has the same thing
SB3_ONLY = {"policy_kwargs": "pass its entries as keywords (net_arch=(64, 64), dueling=True)",
            "verbose": "learn(progress_bar=True) shows progress; the run directory keeps every metric",
            "tensorboard_log": "each run writes TensorBoard events to run_dir/tb (pip install 'tinydqn[tensorboard]')"}


class DQN:
  """A model as SB3's DQN has it: configured now, trained by `learn`, acting by `predict`, kept by `save`/`load`.

  `policy`, `env`: "MlpPolicy" or "CnnPolicy" and an environment id, or the id alone (`DQN("CartPole-v1")`).
  `preset`: a tinydqn preset (default: the env's); `config`: Config fields over it (`tinydqn.make_config`).
  `run_dir`: where `learn` writes the run (default: a new folder under runs/). `device`: a tinygrad device
  ("CPU", "CUDA", ...; None or "auto": the CPU, or tinygrad's DEV when set)."""

  def __init__(self, policy: str | None = None, env: str | None = None, *, preset: str | None = None,
               run_dir: str | Path | None = None, device: str | None = None, **config: Any):
    policy, env_id = _policy_and_env(policy, env)
    for name, hint in SB3_ONLY.items():
      if name in config: raise UserError(f"tinydqn.DQN has no {name}: {hint}")
    self._setup(make_config(env_id, preset, **config), run_dir, device)
    self._observations = _observation_space(self.config)  # an unknown env id, or one DQN cannot take, fails here as in SB3
    if policy is not None: self._check_policy(policy, self._observations[0])

  def _setup(self, config: Config, run_dir: str | Path | None, device: str | None) -> None:
    self.config = config
    self.run_dir = Path(run_dir) if run_dir is not None else None
    self.device = None if device == "auto" else device  # SB3's default device name
    self.policy: Policy | None = None  # after learn or load
    self.result: TrainResult | None = None  # after learn: what `train` returned
    self._observations: tuple[tuple[int, ...], np.dtype] | None = None  # the env's, as tinydqn's envs give them
    self._interrupted = False  # the last learn was stopped by a signal and left a snapshot
    self._rng = np.random.default_rng(config.seed)  # predict's exploration

  def learn(self, total_timesteps: int, progress_bar: bool = False) -> DQN:
    """Trains for `total_timesteps` env steps: `train(config with total_timesteps, run_dir)`. Returns the model."""
    if self.policy is not None:
      raise UserError(f"this model has learned already ({self._origin()}): tinydqn does not add steps to a finished run; "
                      "train a new DQN with the total_timesteps you want")
    if self._interrupted:  # the run this model started, stopped by a signal: `resume` continues it exactly
      if total_timesteps != self.config.total_timesteps:
        raise UserError(f"the interrupted run in {self.run_dir} continues to its own total_timesteps "
                        f"{self.config.total_timesteps}, not {total_timesteps}")
    else:
      self.config = self.config.replace(total_timesteps=total_timesteps)
      self.run_dir = self.run_dir or default_run_dir(self.config.env_id, self.config.seed)
    shape, dtype = self._observations
    try:
      if self._interrupted: self.result = resume(self.run_dir, progress=progress_bar, device=self.device)
      else: self.result = train(self.config, self.run_dir, progress=progress_bar, device=self.device)
    except Interrupted:
      self._interrupted = True
      raise
    self._interrupted = False
    self.policy = Policy(self.result.agent, shape, dtype, self.result.steps)
    return self

  def predict(self, observation: ArrayLike, state: Any = None, episode_start: Any = None,
              deterministic: bool = False) -> tuple[int | np.ndarray, None]:
    """(action, None) for one observation (an int) or a batch (an array). `deterministic`: the greedy action;
    otherwise the run's behaviour policy at its end (ε-greedy with the final ε, as SB3's exploration_rate then)."""
    policy = self._require_policy()
    return (policy.predict(observation) if deterministic else policy.explore(observation, self._rng)), None

  def save(self, path: str | Path) -> Path:
    """Writes the policy as a tinydqn checkpoint, `path`.json and `path`.safetensors; returns the JSON's path."""
    return self._require_policy().save(path)

  @classmethod
  def load(cls, path: str | Path, device: str | None = None, best: bool = False) -> DQN:
    """A model acting as the checkpoint at `path` does (a saved model, a checkpoint file or a run directory; with
    `best`, the run's best evaluated policy)."""
    policy = load(path, best, None if device == "auto" else device)
    model = cls.__new__(cls)  # not __init__: acting needs no environment (a custom env need not be registered here)
    model._setup(policy.config, None, device)
    model.policy = policy
    return model

  # ---- what the calls share ----
  def _check_policy(self, policy: str, shape: tuple[int, ...]) -> None:
    """MlpPolicy needs the config to build an MLP torso for this env's observations, CnnPolicy a convolutional one."""
    torso = network_for(self.config.network, shape)
    if (torso == "mlp") != (policy == "MlpPolicy"):
      fits = "MlpPolicy" if torso == "mlp" else "CnnPolicy"
      raise UserError(f"{policy} does not fit {self.config.env_id}: its observations of shape {shape} get the {torso} torso "
                      f"(network {self.config.network!r}); pass {fits!r}, or choose the torso with network=")

  def _require_policy(self) -> Policy:
    if self.policy is None: raise UserError("this model has no policy yet: call learn(total_timesteps) or DQN.load(path) first")
    return self.policy

  def _origin(self) -> str:
    return f"its run in {self.run_dir} ended at step {self.result.steps}" if self.result is not None else "it was loaded"


def _observation_space(config: Config) -> tuple[tuple[int, ...], np.dtype]:
  """The shape and dtype of the observations of `config`'s env, as tinydqn's envs give them."""
  with contextlib.closing(make_env(config.env_id, sticky_actions=config.sticky_actions)) as env: return describe(env)[:2]


def _policy_and_env(policy: str | None, env: Any) -> tuple[str | None, str]:
  """(policy or None, env id) from SB3's `DQN(policy, env)` or the shorter `DQN(env_id)`."""
  if env is None and isinstance(policy, str) and policy not in POLICIES and not policy.endswith("Policy"):
    policy, env = None, policy  # DQN("CartPole-v1")
  if policy is not None and policy not in POLICIES:
    raise UserError(f"unknown policy {policy!r}: tinydqn.DQN takes {' or '.join(map(repr, POLICIES))} (or no policy: "
                    "DQN('CartPole-v1'))")
  if env is None: raise UserError(f"tinydqn.DQN needs an environment id: DQN({policy or 'MlpPolicy'!r}, 'CartPole-v1')")
  if not isinstance(env, str):
    spec = getattr(env, "spec", None)
    example = f"DQN({policy or 'MlpPolicy'!r}, {spec.id!r})" if spec is not None else "DQN('MlpPolicy', 'CartPole-v1')"
    raise UserError(f"tinydqn.DQN takes an environment id, not a {type(env).__name__}: it makes its own "
                    f"environments from the id (training, vector, evaluation), e.g. {example}")
  return policy, env
