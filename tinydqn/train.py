"""The training loop: Algorithm 1 of Mnih et al. (2013) with the Nature (2015) target network."""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tinygrad import Tensor

from tinydqn.agent import DQNAgent
from tinydqn.atari import clip_rewards, life_loss_terminals, stacks_frames
from tinydqn.buffers import ReplayBuffer
from tinydqn.checkpoint import save_checkpoint
from tinydqn.config import Config
from tinydqn.devices import resolve_device
from tinydqn.errors import Interrupted, TrainingDiverged, UserError
from tinydqn.envs import describe, last_observations, make_env, make_vector_env
from tinydqn.evaluate import EvalResult, evaluate
from tinydqn.frame_buffer import FrameReplayBuffer
from tinydqn.logger import EPISODE_COLUMNS, EVAL_COLUMNS, CsvLog, Progress
from tinydqn.rundir import check_run_dir, default_run_dir, prepare_run_dir
from tinydqn.snapshot import Snapshot, load_latest_snapshot, restore_tinygrad_rng, save_snapshot, tinygrad_rng_state
from tinydqn.tensorboard import TensorBoardLog


@dataclass
class TrainResult:
  run_dir: Path
  agent: DQNAgent
  final_eval: EvalResult | None
  steps_per_second: float
  seconds: float  # wall-clock of the whole loop
  eval_seconds: float  # the part of it spent in periodic greedy evaluation


@dataclass
class LoopState:
  """What the loop carries from one env step to the next. With the agent, the replay memory, the rng and the
  environments it is all a snapshot needs to continue a run exactly, in-progress episodes included."""
  step: int  # environment steps taken, summed over the envs
  episode: int  # episodes finished
  obs: np.ndarray  # the current observation of each env
  episode_returns: np.ndarray
  episode_lengths: np.ndarray
  recent_returns: list[float]  # the last 10 episodic returns, for the progress line
  stats: list[float] | None = None  # [loss, mean Q] of the latest gradient step read back, as logged
  elapsed: float = 0.0  # wall-clock seconds of training so far (time_s continues across a resume)
  eval_seconds: float = 0.0
  lives: np.ndarray | None = None  # Atari: each env's lives, to store a life loss as terminal


def linear_epsilon(config: Config, step: int) -> float:
  """ε falls linearly from exploration_initial_eps to exploration_final_eps over the first
  exploration_fraction of total_timesteps, then stays there (SB3's schedule). Noisy nets explore through their
  noise instead: ε is 0."""
  if config.noisy: return 0.0
  span = config.exploration_fraction * config.total_timesteps
  progress = min(1.0, step / span) if span > 0 else 1.0
  return config.exploration_initial_eps + progress * (config.exploration_final_eps - config.exploration_initial_eps)


def learning_rate_at(config: Config, step: int) -> float:
  """The step size after `step` environment steps: constant, or falling linearly to 0 at the end."""
  if config.learning_rate_schedule == "constant": return config.learning_rate
  return config.learning_rate * (1.0 - step / config.total_timesteps)


def beta_at(config: Config, step: int) -> float:
  """Prioritized replay's importance-sampling exponent: from `beta` at the start linearly to 1 at the end."""
  return config.beta + (1.0 - config.beta) * min(1.0, step / config.total_timesteps)


def crossings(interval: int, before: int, after: int) -> int:
  """How many multiples of `interval` lie in (before, after]: with n envs the step count jumps by n."""
  return after // interval - before // interval


def train(config: Config, run_dir: str | Path | None = None, force: bool = False, progress: bool = True,
          device: str | None = None) -> TrainResult:
  """Trains a DQN agent as `config` says, writing config.json, metrics.csv, eval.csv, summary.json,
  checkpoints/final.* and periodic snapshots to `run_dir` (default: a new folder under runs/). `device`: a
  tinygrad device; default the CPU, or tinygrad's DEV when set. config.json names the device the run started on,
  summary.json the one it finished on (`device` is not a config field: the same config gives the same rows on the
  same device)."""
  device = resolve_device(device)
  run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config.env_id, config.seed)
  check_run_dir(run_dir, force)
  make_env(config.env_id, sticky_actions=config.sticky_actions).close()  # fails here, before anything is written
  prepare_run_dir(run_dir, force)
  (run_dir / "config.json").write_text(json.dumps({**config.to_dict(), "device": device}, indent=2))
  return _run(config, run_dir, progress, device, snapshot=None)


def read_run_config(run_dir: Path) -> tuple[Config, str | None]:
  """A run directory's config and the device it trained on (None for runs saved before the device was stored)."""
  if not (run_dir / "config.json").is_file(): raise UserError(f"{run_dir} is not a run directory (no config.json)")
  try:
    values = json.loads((run_dir / "config.json").read_text())
    device = values.pop("device", None)
    return Config.from_dict(values), device
  except (ValueError, TypeError, AttributeError) as e:
    raise UserError(f"cannot read {run_dir / 'config.json'}: {e}") from None


def resume(run_dir: str | Path, progress: bool = True, device: str | None = None) -> TrainResult:
  """Continues the run in `run_dir` from its newest usable snapshot, on `device` (default: the CPU, or
  tinygrad's DEV when set, as for `train`). With the replay memory in the snapshot (the default) and the same
  device, the result is the run that was never interrupted, row for row and bit for bit; on another device it
  continues with that device's rounding (a warning says so)."""
  run_dir = Path(run_dir)
  config, trained_on = read_run_config(run_dir)
  if (run_dir / "summary.json").exists(): raise UserError(f"the run in {run_dir} has already finished")
  device = resolve_device(device)
  snapshot = load_latest_snapshot(run_dir / "checkpoints")
  if trained_on is not None and trained_on != device:
    print(f"tinydqn: warning: {run_dir} trained on {trained_on} and continues on {device}: later rows will differ from "
          f"an uninterrupted run's in rounding (summary.json will name {device})", file=sys.stderr)
  return _run(config, run_dir, progress, device, snapshot=snapshot)


def _run(config: Config, run_dir: Path, progress: bool, device: str, snapshot: Snapshot | None) -> TrainResult:
  eval_env = make_env(config.env_id, sticky_actions=config.sticky_actions)
  obs_shape, obs_dtype, n_actions = describe(eval_env)
  # Seed everything that draws random numbers: tinygrad (weights), numpy (ε and minibatches), the envs.
  # A snapshot restores each of them below, tinygrad's after the agent's initialisation has drawn from it.
  Tensor.manual_seed(config.seed)
  rng = np.random.default_rng(config.seed)
  # Initialize replay memory D to capacity N; initialize Q with random weights (and Q̂ as its copy).
  # Frame stacks (Atari) are stored one frame per transition; anything else as whole observations.
  memory_class = FrameReplayBuffer if stacks_frames(eval_env) else ReplayBuffer
  memory = memory_class(min(config.buffer_size, config.total_timesteps), obs_shape, obs_dtype, config.num_envs,
                        config.n_step, config.gamma, config.prioritized, config.alpha, config.priority_eps)
  agent = DQNAgent(config, obs_shape, obs_dtype, n_actions, device)
  if snapshot is None:
    envs = make_vector_env(config.env_id, config.num_envs, config.sticky_actions)
    envs.action_space.seed(config.seed)
    n = config.num_envs
    obs, infos = envs.reset(seed=config.seed)
    state = LoopState(0, 0, obs, np.zeros(n), np.zeros(n, dtype=np.int64), [], lives=infos.get("lives"))
  else:
    agent.load_state_dict(snapshot.agent)
    if snapshot.replay is not None: memory.load_state_dict(snapshot.replay)
    rng.bit_generator.state = snapshot.state["rng"]
    restore_tinygrad_rng(snapshot.state["tinygrad_rng"], agent.device)
    envs, state = snapshot.state["envs"], LoopState(**snapshot.state["loop"])
  resume_step = None if snapshot is None else state.step
  tb = TensorBoardLog(run_dir / "tb", purge_step=None if resume_step is None else resume_step + 1)
  episodes_log = CsvLog(run_dir / "metrics.csv", EPISODE_COLUMNS, resume_after_step=resume_step, also=tb.episode)
  eval_log = CsvLog(run_dir / "eval.csv", EVAL_COLUMNS, resume_after_step=resume_step, also=tb.eval)
  bar = Progress(config.total_timesteps, progress, initial=state.step)
  start = time.perf_counter() - state.elapsed
  pending = None  # the latest gradient step's [loss, mean Q], still on the device
  last_eval: tuple[int, EvalResult] | None = None

  def read_stats() -> list[float]:
    nonlocal pending
    if pending is not None:
      state.stats, pending = pending.numpy().tolist(), None
      if not all(map(math.isfinite, state.stats)):
        raise TrainingDiverged(f"the loss became {state.stats[0]} by step {state.step}; snapshots before it are "
                               f"intact in {run_dir / 'checkpoints'} (try a lower learning_rate or max_grad_norm)")
    return state.stats or [float("nan"), float("nan")]

  def run_eval() -> EvalResult:
    eval_start = time.perf_counter()
    result = evaluate(agent, eval_env, config.eval_episodes, config.eval_seed)
    state.eval_seconds += time.perf_counter() - eval_start
    d, now = result.to_dict(), time.perf_counter() - start
    eval_log.write({"step": state.step, **{k: d[k] for k in EVAL_COLUMNS[1:-2]}, "time_s": now,
                    "train_time_s": now - state.eval_seconds})
    bar.write(f"step {state.step}: greedy eval {result.mean_return:.1f} ± {result.std_return:.1f}")
    return result

  snapshot_reported = False

  def write_snapshot() -> None:
    nonlocal snapshot_reported
    read_stats()
    state.elapsed = time.perf_counter() - start
    path = save_snapshot(run_dir / "checkpoints", state.step, agent, memory,
                         {"loop": asdict(state), "rng": rng.bit_generator.state, "envs": envs,
                          "tinygrad_rng": tinygrad_rng_state()},
                         config.checkpoint_buffer, config.keep_checkpoints)
    if path is not None and not snapshot_reported:  # its size, once: with pixels it can be gigabytes
      snapshot_reported = True
      size = sum(f.stat().st_size for f in path.iterdir())
      bar.write(f"step {state.step}: snapshot {path.name} written ({size / 2**20:.1f} MiB, replay memory included: "
                f"{config.checkpoint_buffer})")

  with _stop_on_signals() as stop, tb:  # tb: its event file is flushed however the loop ends
    while state.step < config.total_timesteps:
      # With probability ε select a random action, otherwise a_t = argmax_a Q(φ(s_t), a; θ).
      epsilon = linear_epsilon(config, state.step)
      actions = agent.act(state.obs, epsilon, rng)
      # Execute a_t, observe r_t and x_{t+1}; store (φ_t, a_t, r_t, φ_{t+1}) in D.
      next_obs, rewards, terminated, truncated, infos = envs.step(actions)
      done = terminated | truncated
      # The memory may see clipped rewards and life losses as terminals (Nature DQN); the log sees the game.
      stored_terminated, stored_rewards = terminated, clip_rewards(rewards) if config.clip_rewards else rewards
      if config.terminal_on_life_loss: stored_terminated, state.lives = life_loss_terminals(terminated, infos, state.lives)
      memory.add(state.obs, actions, stored_rewards, last_observations(next_obs, infos, done), stored_terminated,
                 truncated)
      state.obs = next_obs  # finished envs were reset already: this is the next episode's φ_1
      before, state.step = state.step, state.step + config.num_envs
      state.episode_returns += rewards
      state.episode_lengths += 1
      for i in np.flatnonzero(done):
        state.episode += 1
        loss, q_mean = read_stats()
        elapsed = time.perf_counter() - start
        episodes_log.write({"step": state.step, "episode": state.episode,
                            "episodic_return": float(state.episode_returns[i]),
                            "episodic_length": int(state.episode_lengths[i]), "epsilon": epsilon, "loss": loss,
                            "q_mean": q_mean, "time_s": elapsed, "sps": state.step / elapsed})
        state.recent_returns = (state.recent_returns + [float(state.episode_returns[i])])[-10:]
        bar.update(state.step, eps=epsilon, ret10=float(np.mean(state.recent_returns)), loss=loss)
        state.episode_returns[i], state.episode_lengths[i] = 0.0, 0
      # Sample random minibatches from D and take gradient steps on (y_j − Q(φ_j, a_j; θ))².
      if state.step > config.learning_starts and (rounds := crossings(config.train_freq, before, state.step)):
        if config.learning_rate_schedule != "constant": agent.set_learning_rate(learning_rate_at(config, state.step))
        beta = beta_at(config, state.step)
        if config.prioritized:  # each step's priorities are written back before the next minibatch is drawn
          for _ in range(rounds * config.gradient_steps):
            drawn = memory.sample_into(agent.batch, rng, beta)
            pending = agent.update(rng)
            memory.update_priorities(drawn, agent.last_priorities)
        else: pending = agent.updates(rounds * config.gradient_steps, lambda batch: memory.sample_into(batch, rng), rng)
      # Every C steps, Q̂ ← Q (or Polyak averaging with τ < 1).
      for _ in range(crossings(config.target_update_interval, before, state.step)): agent.sync_target()
      if config.eval_freq and crossings(config.eval_freq, before, state.step): last_eval = (state.step, run_eval())
      if state.step < config.total_timesteps and (stop.signum or (
          config.checkpoint_freq and crossings(config.checkpoint_freq, before, state.step))):
        write_snapshot()
        if stop.signum: raise Interrupted(stop.signum, state.step, run_dir)

  read_stats()
  seconds = time.perf_counter() - start
  bar.update(state.step)
  final_eval = last_eval[1] if last_eval and last_eval[0] == state.step else run_eval()
  bar.close()
  episodes_log.close()
  eval_log.close()
  tb.close()
  save_checkpoint(agent, state.step, obs_shape, obs_dtype, run_dir / "checkpoints" / "final")
  summary = {"env_id": config.env_id, "seed": config.seed, "device": agent.device, "total_timesteps": state.step,
             "episodes": state.episode,
             "seconds": seconds, "eval_seconds": state.eval_seconds, "steps_per_second": state.step / seconds,
             "final_eval": final_eval.to_dict()}
  (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
  envs.close()
  eval_env.close()
  return TrainResult(run_dir, agent, final_eval, state.step / seconds, seconds, state.eval_seconds)


class _stop_on_signals:
  """Within the block, SIGINT/SIGTERM only record the signal (the loop then snapshots and stops); a second
  SIGINT interrupts at once. Signal handlers can only be set from the main thread; elsewhere this does nothing."""

  def __enter__(self) -> _stop_on_signals:
    self.signum: int | None = None
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM): self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum: int, frame) -> None:
    if self.signum is not None and signum == signal.SIGINT: raise KeyboardInterrupt
    self.signum = signum

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items(): signal.signal(sig, handler)
