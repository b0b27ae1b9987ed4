"""The training loop: Algorithm 1 of Mnih et al. (2013) with the Nature (2015) target network."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tinygrad import Tensor

from tinydqn.agent import DQNAgent
from tinydqn.buffers import ReplayBuffer
from tinydqn.checkpoint import save_checkpoint
from tinydqn.config import Config
from tinydqn.envs import describe, last_observations, make_env, make_vector_env
from tinydqn.evaluate import EvalResult, evaluate
from tinydqn.logger import EPISODE_COLUMNS, EVAL_COLUMNS, CsvLog, Progress
from tinydqn.rundir import check_run_dir, default_run_dir, prepare_run_dir


@dataclass
class TrainResult:
  run_dir: Path
  agent: DQNAgent
  final_eval: EvalResult | None
  steps_per_second: float
  seconds: float  # wall-clock of the whole loop
  eval_seconds: float  # the part of it spent in periodic greedy evaluation


def linear_epsilon(config: Config, step: int) -> float:
  """ε falls linearly from exploration_initial_eps to exploration_final_eps over the first
  exploration_fraction of total_timesteps, then stays there (SB3's schedule)."""
  span = config.exploration_fraction * config.total_timesteps
  progress = min(1.0, step / span) if span > 0 else 1.0
  return config.exploration_initial_eps + progress * (config.exploration_final_eps - config.exploration_initial_eps)


def learning_rate_at(config: Config, step: int) -> float:
  """The step size after `step` environment steps: constant, or falling linearly to 0 at the end."""
  if config.learning_rate_schedule == "constant": return config.learning_rate
  return config.learning_rate * (1.0 - step / config.total_timesteps)


def crossings(interval: int, before: int, after: int) -> int:
  """How many multiples of `interval` lie in (before, after]: with n envs the step count jumps by n."""
  return after // interval - before // interval


def train(config: Config, run_dir: str | Path | None = None, force: bool = False, progress: bool = True,
          device: str | None = None) -> TrainResult:
  """Trains a DQN agent as `config` says, writing config.json, metrics.csv, eval.csv, summary.json and
  checkpoints/final.* to `run_dir` (default: a new folder under runs/)."""
  run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config.env_id, config.seed)
  check_run_dir(run_dir, force)
  eval_env = make_env(config.env_id)  # fails here, before anything is written, if the env cannot be used
  envs = make_vector_env(config.env_id, config.num_envs)
  obs_shape, obs_dtype, n_actions = describe(eval_env)
  prepare_run_dir(run_dir, force)
  (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

  # Seed everything that draws random numbers: tinygrad (weights), numpy (ε and minibatches), the envs.
  Tensor.manual_seed(config.seed)
  rng = np.random.default_rng(config.seed)
  envs.action_space.seed(config.seed)

  # Initialize replay memory D to capacity N; initialize Q with random weights (and Q̂ as its copy).
  memory = ReplayBuffer(min(config.buffer_size, config.total_timesteps), obs_shape, obs_dtype)
  agent = DQNAgent(config, obs_shape, obs_dtype, n_actions, device)

  episodes_log, eval_log = CsvLog(run_dir / "metrics.csv", EPISODE_COLUMNS), CsvLog(run_dir / "eval.csv", EVAL_COLUMNS)
  bar = Progress(config.total_timesteps, progress)
  start, stats, last_eval, eval_seconds = time.perf_counter(), None, None, 0.0
  recent_returns: list[float] = []
  episode, step = 0, 0  # `step` counts environment steps taken, summed over the envs
  episode_returns, episode_lengths = np.zeros(config.num_envs), np.zeros(config.num_envs, dtype=np.int64)
  obs, _ = envs.reset(seed=config.seed)

  def run_eval() -> EvalResult:
    nonlocal eval_seconds
    eval_start = time.perf_counter()
    result = evaluate(agent, eval_env, config.eval_episodes, config.eval_seed)
    eval_seconds += time.perf_counter() - eval_start
    d, now = result.to_dict(), time.perf_counter() - start
    eval_log.write({"step": step, **{k: d[k] for k in EVAL_COLUMNS[1:-2]}, "time_s": now,
                    "train_time_s": now - eval_seconds})
    bar.write(f"step {step}: greedy eval {result.mean_return:.1f} ± {result.std_return:.1f}")
    return result

  while step < config.total_timesteps:
    # With probability ε select a random action, otherwise a_t = argmax_a Q(φ(s_t), a; θ).
    epsilon = linear_epsilon(config, step)
    actions = agent.act(obs, epsilon, rng)
    # Execute a_t, observe r_t and x_{t+1}; store (φ_t, a_t, r_t, φ_{t+1}) in D.
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    done = terminated | truncated
    memory.add(obs, actions, rewards, last_observations(next_obs, infos, done), terminated, truncated)
    obs = next_obs  # finished envs were reset already: this is the next episode's φ_1
    before, step = step, step + config.num_envs
    episode_returns += rewards
    episode_lengths += 1
    for i in np.flatnonzero(done):
      episode += 1
      loss, q_mean = stats.numpy().tolist() if stats is not None else (float("nan"), float("nan"))
      elapsed = time.perf_counter() - start
      episodes_log.write({"step": step, "episode": episode, "episodic_return": float(episode_returns[i]),
                          "episodic_length": int(episode_lengths[i]), "epsilon": epsilon, "loss": loss,
                          "q_mean": q_mean, "time_s": elapsed, "sps": step / elapsed})
      recent_returns = (recent_returns + [float(episode_returns[i])])[-10:]
      bar.update(step, eps=epsilon, ret10=float(np.mean(recent_returns)), loss=loss)
      episode_returns[i], episode_lengths[i] = 0.0, 0
    # Sample random minibatches from D and take gradient steps on (y_j − Q(φ_j, a_j; θ))².
    if step > config.learning_starts and (rounds := crossings(config.train_freq, before, step)):
      if config.learning_rate_schedule != "constant": agent.set_learning_rate(learning_rate_at(config, step))
      for _ in range(rounds * config.gradient_steps):
        memory.sample_into(agent.batch, rng)
        stats = agent.update()
    # Every C steps, Q̂ ← Q (or Polyak averaging with τ < 1).
    for _ in range(crossings(config.target_update_interval, before, step)): agent.sync_target()
    if config.eval_freq and crossings(config.eval_freq, before, step): last_eval = (step, run_eval())

  seconds = time.perf_counter() - start
  bar.update(step)
  final_eval = last_eval[1] if last_eval and last_eval[0] == step else run_eval()
  bar.close()
  episodes_log.close()
  eval_log.close()
  save_checkpoint(agent, step, obs_shape, obs_dtype, run_dir / "checkpoints" / "final")
  summary = {"env_id": config.env_id, "seed": config.seed, "total_timesteps": step, "episodes": episode,
             "seconds": seconds, "eval_seconds": eval_seconds, "steps_per_second": step / seconds,
             "final_eval": final_eval.to_dict()}
  (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
  envs.close()
  eval_env.close()
  return TrainResult(run_dir, agent, final_eval, step / seconds, seconds, eval_seconds)
