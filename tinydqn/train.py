"""The training loop: Algorithm 1 of Mnih et al. (2013) with the Nature (2015) target network."""
from __future__ import annotations

import contextlib
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
from tinydqn.evaluate import EvalResult, EvaluationStopped, evaluate
from tinydqn.fast import warn_without_command_queue
from tinydqn.frame_buffer import FrameReplayBuffer
from tinydqn.logger import EPISODE_COLUMNS, EVAL_COLUMNS, CsvLog, Progress
from tinydqn.networks import build_torso
from tinydqn.rundir import check_run_dir, default_run_dir, lock_run_dir, prepare_run_dir
from tinydqn.snapshot import (Snapshot, load_latest_snapshot, restore_tinygrad_rng, save_snapshot, snapshot_dirs,
                              tinygrad_rng_state)
from tinydqn.tensorboard import TensorBoardLog


@dataclass
class TrainResult:
  run_dir: Path
  agent: DQNAgent
  final_eval: EvalResult | None
  steps_per_second: float
  steps: int  # env steps taken: total_timesteps rounded up to a multiple of num_envs
  seconds: float  # wall-clock of the whole loop
  eval_seconds: float  # the part of it spent in periodic greedy evaluation
  best_eval: dict | None  # the best periodic evaluation (step, mean_return, std_return, episodes), None if none ran
  stopped_early: dict | None  # why and where a run ended before total_timesteps (stop_at_return), else None


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
  pending_stats: list[float] | None = None  # read back by a snapshot, not logged yet (lagged_acting)
  elapsed: float = 0.0  # wall-clock seconds of training so far (time_s continues across a resume)
  eval_seconds: float = 0.0
  lives: np.ndarray | None = None  # Atari: each env's lives, to store a life loss as terminal
  best_eval: dict | None = None  # the best periodic evaluation so far, whose weights checkpoints/best.* hold


def linear_schedule(start: float, end: float, step: int, span: float) -> float:
  """`start` moving linearly to `end` over the first `span` env steps, then `end`. Clamped: with n envs the last
  step can pass `span` (total 1001 with 4 envs ends at 1004), and a schedule must not go beyond its end value."""
  progress = min(1.0, step / span) if span > 0 else 1.0
  return start + progress * (end - start)


def linear_epsilon(config: Config, step: int) -> float:
  """ε falls linearly from exploration_initial_eps to exploration_final_eps over the first
  exploration_fraction of total_timesteps, then stays there (SB3's schedule). Noisy nets explore through their
  noise instead: ε is 0."""
  if config.noisy: return 0.0
  return linear_schedule(config.exploration_initial_eps, config.exploration_final_eps, step,
                         config.exploration_fraction * config.total_timesteps)


def learning_rate_at(config: Config, step: int) -> float:
  """The step size after `step` environment steps: constant, or falling linearly to 0 at the end."""
  if config.learning_rate_schedule == "constant": return config.learning_rate
  return linear_schedule(config.learning_rate, 0.0, step, config.total_timesteps)


def beta_at(config: Config, step: int) -> float:
  """Prioritized replay's importance-sampling exponent: from `beta` at the start linearly to 1 at the end."""
  return linear_schedule(config.beta, 1.0, step, config.total_timesteps)


def crossings(interval: int, before: int, after: int) -> int:
  """How many multiples of `interval` lie in (before, after]: with n envs the step count jumps by n."""
  return after // interval - before // interval


def ready_to_learn(config: Config, step: int, memory: ReplayBuffer) -> bool:
  """Gradient steps start after `learning_starts` env steps, once the memory holds that many transitions (or is
  full). In a fresh run the two coincide; a run resumed from a snapshot without its replay memory refills it
  first instead of training at once on the few transitions gathered since the resume."""
  return step > config.learning_starts and len(memory) > min(config.learning_starts, memory.capacity - 1)


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
  # An env, or a network that cannot take its observations, fails here, before anything is written.
  with contextlib.closing(make_env(config.env_id, sticky_actions=config.sticky_actions)) as env:
    build_torso(config, describe(env)[0])
  with lock_run_dir(run_dir):  # held until the run ends: no second run can write here meanwhile
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
  with lock_run_dir(run_dir):
    snapshot = load_latest_snapshot(run_dir / "checkpoints")
    if trained_on is not None and trained_on != device:
      print(f"tinydqn: warning: {run_dir} trained on {trained_on} and continues on {device}: later rows will differ "
            f"from an uninterrupted run's in rounding (summary.json will name {device})", file=sys.stderr)
    return _run(config, run_dir, progress, device, snapshot=snapshot)


def _run(config: Config, run_dir: Path, progress: bool, device: str, snapshot: Snapshot | None) -> TrainResult:
  """Algorithm 1, step by step; `_Run` holds what the steps share and says how each is done."""
  # Environments (ALE instances) and CSV files are closed however the run ends: finished, diverged, interrupted.
  with contextlib.ExitStack() as resources:
    # Initialize replay memory D to capacity N; initialize Q with random weights and Q̂ as its copy (or all of it,
    # the envs and the random generators included, as a snapshot left them).
    stop = _stop_on_signals()
    run = _Run(config, run_dir, progress, device, snapshot, resources, stop)
    state = run.state
    with stop, run.tb:  # tb: its event file is flushed however the loop ends
      while state.step < config.total_timesteps:
        before = state.step
        # With probability ε select a random action a_t, otherwise a_t = argmax_a Q(φ(s_t), a; θ).
        epsilon, actions = run.act()
        # Execute a_t in the environments; observe r_t and x_{t+1}.
        next_obs, rewards, terminated, truncated, infos = run.envs.step(actions)
        # Store the transition (φ_t, a_t, r_t, φ_{t+1}) in D.
        run.store(actions, next_obs, rewards, terminated, truncated, infos)
        run.count(rewards, terminated | truncated, epsilon)  # step counter; a row per finished episode
        # Sample random minibatches from D and take gradient steps on (y_j − Q(φ_j, a_j; θ))².
        run.learn(before)
        # (Nature) Every C steps reset Q̂ = Q (or move it towards Q by Polyak averaging with τ < 1).
        run.sync_target(before)
        run.evaluate(before)  # greedy, every eval_freq steps; a new best is saved as checkpoints/best.*
        if run.solved(): break  # stop_at_return reached: the policy just evaluated is the one handed over
        run.snapshot(before, stop.signum)  # every checkpoint_freq steps, and on SIGINT/SIGTERM (then stops)
    return run.finish()


class _Run:
  """What the steps of `_run` share: the agent, the replay memory, the environments, the random generator, the
  loop state and the logs, and how each step is done."""

  def __init__(self, config: Config, run_dir: Path, progress: bool, device: str, snapshot: Snapshot | None,
               resources: contextlib.ExitStack, stop: _stop_on_signals):
    self.config, self.run_dir, self.stop = config, run_dir, stop
    self.eval_env = make_env(config.env_id, sticky_actions=config.sticky_actions)
    resources.callback(self.eval_env.close)
    self.obs_shape, self.obs_dtype, n_actions = describe(self.eval_env)
    # Seed everything that draws random numbers: tinygrad (weights), numpy (ε and minibatches), the envs.
    # A snapshot restores each of them below, tinygrad's after the agent's initialisation has drawn from it.
    Tensor.manual_seed(config.seed)
    self.rng = np.random.default_rng(config.seed)
    # Frame stacks (Atari) are stored one frame per transition; anything else as whole observations.
    memory_class = FrameReplayBuffer if stacks_frames(self.eval_env) else ReplayBuffer
    self.memory = memory_class(min(config.buffer_size, config.total_timesteps), self.obs_shape, self.obs_dtype,
                               config.num_envs, config.n_step, config.gamma, config.prioritized, config.alpha,
                               config.priority_eps, config.terminal_fraction)
    self.agent = DQNAgent(config, self.obs_shape, self.obs_dtype, n_actions, device)
    if config.lagged_acting and not self.agent.acts_in_numpy:
      raise UserError(f"lagged_acting needs a network that acts in numpy on the CPU device (an MLP or MinAtar's CNN); "
                      f"this run has {type(self.agent.online.torso).__name__} on {self.agent.device}")
    warn_without_command_queue(self.agent.device)
    if snapshot is None:
      self.envs = make_vector_env(config.env_id, config.num_envs, config.sticky_actions)
      self.envs.action_space.seed(config.seed)
      n = config.num_envs
      obs, infos = self.envs.reset(seed=config.seed)
      self.state = LoopState(0, 0, obs.copy(), np.zeros(n), np.zeros(n, dtype=np.int64), [], lives=infos.get("lives"))
    else:
      self.agent.load_state_dict(snapshot.agent)
      if snapshot.replay is not None: self.memory.load_state_dict(snapshot.replay)
      self.rng.bit_generator.state = snapshot.state["rng"]
      restore_tinygrad_rng(snapshot.state["tinygrad_rng"], self.agent.device)
      self.envs, self.state = snapshot.state["envs"], LoopState(**snapshot.state["loop"])
    resources.callback(self.envs.close)
    resume_step = None if snapshot is None else self.state.step
    self.tb = TensorBoardLog(run_dir / "tb", purge_step=None if resume_step is None else resume_step + 1)
    self.episodes_log = CsvLog(run_dir / "metrics.csv", EPISODE_COLUMNS, resume_after_step=resume_step,
                               also=self.tb.episode)
    self.eval_log = CsvLog(run_dir / "eval.csv", EVAL_COLUMNS, resume_after_step=resume_step, also=self.tb.eval)
    resources.callback(self.episodes_log.close)
    resources.callback(self.eval_log.close)
    self.bar = Progress(config.total_timesteps, progress, initial=self.state.step)
    self.start = time.perf_counter() - self.state.elapsed
    self.pending: Tensor | None = None  # the latest gradient step's [loss, mean Q], still on the device
    self.last_eval: tuple[int, EvalResult] | None = None
    self.stop_evidence: EvalResult | None = None  # the episodes a stop_at_return stop was decided on
    self.snapshot_reported = False

  # ---- the steps of Algorithm 1 ----
  def act(self) -> tuple[float, np.ndarray]:
    epsilon = linear_epsilon(self.config, self.state.step)
    return epsilon, self.agent.act(self.state.obs, epsilon, self.rng)

  def store(self, actions: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, infos: dict) -> None:
    """The memory may see clipped rewards and life losses as terminals (Nature DQN); the log sees the game."""
    config, state = self.config, self.state
    stored_terminated, stored_rewards = terminated, clip_rewards(rewards) if config.clip_rewards else rewards
    if config.terminal_on_life_loss: stored_terminated, state.lives = life_loss_terminals(terminated, infos, state.lives)
    self.memory.add(state.obs, actions, stored_rewards, last_observations(next_obs, infos, terminated | truncated),
                    stored_terminated, truncated)
    # a copy: the vector env overwrites next_obs in its next step. Finished envs were reset already: this is the
    # next episode's φ_1
    state.obs = next_obs.copy()

  def count(self, rewards: np.ndarray, done: np.ndarray, epsilon: float) -> None:
    """Advances the step counter and the episodes' sums; writes a row for each episode that just ended."""
    state = self.state
    state.step += self.config.num_envs
    state.episode_returns += rewards
    state.episode_lengths += 1
    if not done.any(): return
    for i in np.flatnonzero(done):
      state.episode += 1
      # lagged_acting: the previous round's, read when this round started (reading now would wait for the step)
      loss, q_mean = (state.stats or [math.nan, math.nan]) if self.config.lagged_acting else self.read_stats()
      elapsed = time.perf_counter() - self.start
      self.episodes_log.write({"step": state.step, "episode": state.episode,
                               "episodic_return": float(state.episode_returns[i]),
                               "episodic_length": int(state.episode_lengths[i]), "epsilon": epsilon, "loss": loss,
                               "q_mean": q_mean, "time_s": elapsed, "sps": state.step / elapsed})
      state.recent_returns = (state.recent_returns + [float(state.episode_returns[i])])[-10:]
      self.bar.update(state.step, eps=epsilon, ret10=float(np.mean(state.recent_returns)), loss=loss)
      state.episode_returns[i], state.episode_lengths[i] = 0.0, 0

  def learn(self, before: int) -> None:
    """`gradient_steps` per `train_freq` env steps crossed since `before`, once learning has started."""
    config, agent, memory, rng, step = self.config, self.agent, self.memory, self.rng, self.state.step
    rounds = crossings(config.train_freq, before, step)
    if not rounds or not ready_to_learn(config, step, memory): return
    if config.lagged_acting:  # acting keeps θ from before this round; the round runs while the loop goes on
      agent.refresh_acting()
      self.read_stats()
    if config.learning_rate_schedule != "constant": agent.set_learning_rate(learning_rate_at(config, step))
    if config.prioritized:  # each step's priorities are written back before the next minibatch is drawn
      beta = beta_at(config, step)
      for _ in range(rounds * config.gradient_steps):
        drawn = memory.sample_into(agent.batch, rng, beta)
        self.pending = agent.update(rng)
        memory.update_priorities(drawn, agent.last_priorities)
    else: self.pending = agent.updates(rounds * config.gradient_steps, lambda batch: memory.sample_into(batch, rng), rng,
                                       wait=not config.lagged_acting)

  def sync_target(self, before: int) -> None:
    for _ in range(crossings(self.config.target_update_interval, before, self.state.step)): self.agent.sync_target()

  def evaluate(self, before: int) -> None:
    """A greedy evaluation every eval_freq steps, kept if it is the best so far."""
    if self.config.eval_freq and crossings(self.config.eval_freq, before, self.state.step):
      self.last_eval = (self.state.step, self.run_eval())
      self.keep_if_best(self.last_eval[1])

  def keep_if_best(self, result: EvalResult) -> None:
    """An evaluation whose mean beats every earlier one (strictly, as SB3's EvalCallback) writes the weights it
    played to checkpoints/best.*. The loop state remembers it, so a resumed run writes the same best checkpoint as
    the uninterrupted one."""
    state = self.state
    if state.best_eval is None or result.mean_return > state.best_eval["mean_return"]:
      state.best_eval = {"step": state.step, "mean_return": result.mean_return, "std_return": result.std_return,
                         "episodes": len(result.returns)}
      save_checkpoint(self.agent, state.step, self.obs_shape, self.obs_dtype, self.run_dir / "checkpoints" / "best",
                      state.best_eval)

  def solved(self) -> bool:
    """Whether the evaluation of this step reached stop_at_return before the end of the budget, and kept it over
    stop_eval_episodes: the evaluation's episodes and the further ones played now (seeds on from the evaluation's).
    The evidence is kept in `stop_evidence`."""
    config, state, threshold = self.config, self.state, self.config.stop_at_return
    if not (threshold is not None and state.step < config.total_timesteps and self.last_eval is not None
            and self.last_eval[0] == state.step and self.last_eval[1].mean_return >= threshold): return False
    evidence, extra = self.last_eval[1], config.stop_eval_episodes - config.eval_episodes
    if extra > 0:
      more = self.timed_evaluation(extra, config.eval_seed + config.eval_episodes)
      evidence = EvalResult(evidence.returns + more.returns, evidence.lengths + more.lengths)
      if evidence.mean_return < threshold:
        self.bar.write(f"step {state.step}: not stopping: over {len(evidence.returns)} episodes the greedy mean is "
                       f"{evidence.mean_return:.1f}, below stop_at_return {threshold:g}")
        return False
    self.stop_evidence = evidence
    return True

  def snapshot(self, before: int, signum: int | None) -> None:
    config, step = self.config, self.state.step
    if step < config.total_timesteps and (signum or (config.checkpoint_freq and crossings(config.checkpoint_freq, before, step))):
      written = self.write_snapshot()
      if signum: raise Interrupted(signum, step, self.resume_hint("snapshot written" if written else
                                                                  "its snapshot was skipped (too little disk space)"))

  def resume_hint(self, what: str) -> str:
    """`what` happened, and what `tinydqn train --resume` would continue from."""
    newest = (snapshot_dirs(self.run_dir / "checkpoints") or [None])[-1]
    command = f"tinydqn train --resume {self.run_dir}"
    if newest is not None and newest.name.endswith(f"{self.state.step:012d}"): return f"{what}; continue with: {command}"
    if newest is not None: return f"{what}; a resume continues from the newest snapshot, {newest.name}: {command}"
    return f"{what}; there is no snapshot to resume from (start the run again with --force)"

  def finish(self) -> TrainResult:
    """The final evaluation (unless one just ran), checkpoint and summary."""
    state = self.state
    self.read_stats()
    seconds = time.perf_counter() - self.start
    self.bar.update(state.step)
    if self.last_eval and self.last_eval[0] == state.step: final_eval = self.last_eval[1]
    else:
      final_eval = self.run_eval()
      if self.config.eval_freq: self.keep_if_best(final_eval)  # so that the best is never below the final
    stopped_early = None
    if state.step < self.config.total_timesteps:  # only stop_at_return ends the loop early
      evidence = self.stop_evidence
      stopped_early = {"step": state.step, "reason": "stop_at_return", "stop_at_return": self.config.stop_at_return,
                       "mean_return": evidence.mean_return, "std_return": evidence.std_return,
                       "episodes": len(evidence.returns)}
      self.bar.write(f"step {state.step}: solved (greedy mean {evidence.mean_return:.1f} over {len(evidence.returns)} "
                     f"episodes >= stop_at_return {self.config.stop_at_return:g}): training stops here")
    self.bar.close()
    self.tb.close()
    save_checkpoint(self.agent, state.step, self.obs_shape, self.obs_dtype, self.run_dir / "checkpoints" / "final")
    summary = {"env_id": self.config.env_id, "seed": self.config.seed, "device": self.agent.device, "total_timesteps": state.step,
               "episodes": state.episode, "seconds": seconds, "eval_seconds": state.eval_seconds,
               "steps_per_second": state.step / seconds, "final_eval": final_eval.to_dict(),
               "best_eval": state.best_eval, "stopped_early": stopped_early}
    (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(self.run_dir, self.agent, final_eval, state.step / seconds, state.step, seconds,
                       state.eval_seconds, state.best_eval, stopped_early)

  # ---- what the steps use ----
  def read_stats(self) -> list[float]:
    """[loss, mean Q] of the latest gradient step (reading it waits for the device); stops a diverged run."""
    state = self.state
    self.fetch_stats()
    if state.pending_stats is not None:
      state.stats, state.pending_stats = state.pending_stats, None
      if not all(map(math.isfinite, state.stats)):
        raise TrainingDiverged(f"the loss became {state.stats[0]} by step {state.step}; snapshots before it are "
                               f"intact in {self.run_dir / 'checkpoints'} (try a lower learning_rate or max_grad_norm)")
    return state.stats or [float("nan"), float("nan")]

  def fetch_stats(self) -> None:
    """Reads the latest gradient step's [loss, mean Q] from the device into the loop state, not logged yet."""
    if self.pending is not None: self.state.pending_stats, self.pending = self.agent.read(self.pending).tolist(), None

  def timed_evaluation(self, episodes: int, seed: int) -> EvalResult:
    """Greedy episodes on the evaluation env, their time counted as evaluation time."""
    state, eval_start = self.state, time.perf_counter()
    try:
      result = evaluate(self.agent, self.eval_env, episodes, seed, should_stop=lambda: self.stop.signum is not None)
    except EvaluationStopped:  # a signal during an evaluation: stop now, with nothing of it kept (a resume redoes it)
      raise Interrupted(self.stop.signum, state.step, self.resume_hint("the evaluation at this step was cut short")) from None
    state.eval_seconds += time.perf_counter() - eval_start
    return result

  def run_eval(self) -> EvalResult:
    state = self.state
    result = self.timed_evaluation(self.config.eval_episodes, self.config.eval_seed)
    d, now = result.to_dict(), time.perf_counter() - self.start
    self.eval_log.write({"step": state.step, **{k: d[k] for k in EVAL_COLUMNS[1:-2]}, "time_s": now,
                         "train_time_s": now - state.eval_seconds})
    self.bar.write(f"step {state.step}: greedy eval {result.mean_return:.1f} ± {result.std_return:.1f}")
    return result

  def write_snapshot(self) -> bool:
    """Writes a snapshot of this step; False if it was skipped (too little disk space, said on stderr)."""
    config, state = self.config, self.state
    # Lagged acting logs each round's stats from the next round on: a snapshot keeps the latest unlogged, so a
    # resumed run logs what the uninterrupted one does.
    if config.lagged_acting: self.fetch_stats()
    else: self.read_stats()
    state.elapsed = time.perf_counter() - self.start
    path = save_snapshot(self.run_dir / "checkpoints", state.step, self.agent, self.memory,
                         {"loop": asdict(state), "rng": self.rng.bit_generator.state, "envs": self.envs,
                          "tinygrad_rng": tinygrad_rng_state()},
                         config.checkpoint_buffer, config.keep_checkpoints)
    if path is not None and not self.snapshot_reported:  # its size, once: with pixels it can be gigabytes
      self.snapshot_reported = True
      size = sum(f.stat().st_size for f in path.iterdir())
      self.bar.write(f"step {state.step}: snapshot {path.name} written ({size / 2**20:.1f} MiB, replay memory "
                     f"included: {config.checkpoint_buffer})")
    return path is not None


class _stop_on_signals:
  """Within the block, SIGINT/SIGTERM only record the signal (the loop then snapshots and stops); a second
  SIGINT interrupts at once. Signal handlers can only be set from the main thread; elsewhere this does nothing."""

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def __enter__(self) -> _stop_on_signals:
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM): self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum: int, frame) -> None:
    if self.signum is not None and signum == signal.SIGINT: raise KeyboardInterrupt
    self.signum = signum

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items(): signal.signal(sig, handler)
