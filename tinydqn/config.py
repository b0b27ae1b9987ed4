"""The run configuration: one frozen dataclass, validated on construction, and the presets shipped as TOML.

Field names follow Stable-Baselines3 / rl-baselines3-zoo so their hyperparameters port one to one.
As in SB3, `train_freq` and `target_update_interval` count environment steps.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from tinydqn.atari import is_atari, is_minatar
from tinydqn.errors import UserError


NETWORKS = ("auto", "mlp", "nature_cnn", "minatar_cnn")  # torsos; see networks.build_torso


def _doc(text: str, **kw: Any) -> Any:
  """A dataclass field whose help text travels with it (shown by `tinydqn train --help`)."""
  return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class Config:
  """Everything that defines a training run. Two runs with equal configs on the same device are identical."""
  env_id: str = _doc("Gymnasium environment id, e.g. CartPole-v1.", default="CartPole-v1")
  total_timesteps: int = _doc("Environment steps to train for.", default=50_000)
  seed: int = _doc("Seeds the environments (env i: seed + i), numpy and tinygrad.", default=0)
  num_envs: int = _doc("Environments stepped together (Gymnasium SyncVectorEnv). train_freq, "
                       "target_update_interval and eval_freq still count env steps summed over all of them.",
                       default=1)
  # Algorithm 1 / Nature DQN
  learning_rate: float = _doc("Optimizer step size.", default=1e-4)
  learning_rate_schedule: str = _doc("'constant', or 'linear': anneal to 0 at total_timesteps (the zoo's lin_ prefix).",
                                     default="constant")
  buffer_size: int = _doc("Replay memory capacity N (transitions).", default=1_000_000)
  learning_starts: int = _doc("Environment steps collected before the first gradient step.", default=100)
  batch_size: int = _doc("Transitions per minibatch.", default=32)
  tau: float = _doc("Target update coefficient: 1.0 copies the online net (hard update), <1 is Polyak averaging.",
                    default=1.0)
  gamma: float = _doc("Discount factor γ in y = r + γ max Q_target(s', a').", default=0.99)
  train_freq: int = _doc("Do gradient steps every this many environment steps.", default=4)
  gradient_steps: int = _doc("Gradient steps each time training happens.", default=1)
  fused_updates: int = _doc("Run up to this many of those gradient steps in one jitted call (the same numbers as one "
                            "call each, less overhead; not with prioritized replay). 1 turns it off. A call of more steps costs "
                            "more to capture at a run's start (BENCHMARKS.md, \"Start-up\").", default=4)
  lagged_acting: bool = _doc("Act on the weights from before the latest round of gradient steps, so that the round "
                             "runs on a second core while the loop steps the envs (the CPU device, networks that act "
                             "in numpy). Each action then lags one round (train_freq env steps); the run stays "
                             "deterministic and resumable. Off: every action sees the latest weights (Algorithm 1).",
                             default=False)
  target_update_interval: int = _doc("Update the target network every this many environment steps (C).",
                                     default=10_000)
  exploration_fraction: float = _doc("Fraction of total_timesteps over which ε falls linearly.", default=0.1)
  exploration_initial_eps: float = _doc("ε at the start of training.", default=1.0)
  exploration_final_eps: float = _doc("ε after the exploration fraction.", default=0.05)
  max_grad_norm: float = _doc("Clip the global gradient norm to this value (0 disables clipping).", default=10.0)
  net_arch: tuple[int, ...] = _doc("Hidden layer sizes of the MLP Q-network, e.g. 128,128.", default=(128, 128))
  # Variants
  double_q: bool = _doc("Double DQN: pick a' with the online net, evaluate it with the target net.", default=False)
  dueling: bool = _doc("Dueling head: Q = V + A - mean(A).", default=False)
  munchausen: float = _doc("Munchausen DQN (Vieillard et al. 2020) when > 0: this α scales the bonus τ·log π(a|s) "
                           "added to the reward, with a soft (entropy-regularized) target; the paper's α is 0.9. "
                           "0 is off.", default=0.0)
  munchausen_tau: float = _doc("Munchausen DQN: temperature τ of the softmax policy π = softmax(Q̂/τ).", default=0.03)
  munchausen_clip: float = _doc("Munchausen DQN: lower clip l₀ of the bonus τ·log π(a|s), in [l₀, 0].", default=-1.0)
  loss: str = _doc("TD loss: 'mse' (equation 3 of the paper) or 'huber' (Nature DQN's clipped error).",
                   default="huber")
  optimizer: str = _doc("'adam'; 'rmsprop', the Nature DQN's centered RMSProp (decay 0.95, eps 0.01 inside the "
                        "square root); or 'rmsprop_torch', torch's centered RMSprop (eps 0.01 outside the root, "
                        "with momentum), which MinAtar's reference DQN uses.", default="adam")
  momentum: float = _doc("'rmsprop_torch' only: momentum of its steps (MinAtar's reference: 0.95).", default=0.0)
  adam_eps: float = _doc("Adam's epsilon, added to the root of its second moment (torch's and SB3's default 1e-8; "
                         "Rainbow: 1.5e-4).", default=1e-8)
  # Rainbow components (Hessel et al. 2018), each a switch
  n_step: int = _doc("Multi-step returns: sum this many discounted rewards before bootstrapping with gamma^n.",
                     default=1)
  terminal_fraction: float = _doc("This fraction of each uniform minibatch is drawn from the stored transitions that "
                                  "terminated (0: none set apart).", default=0.0)
  prioritized: bool = _doc("Prioritized replay (Schaul et al. 2016): sample in proportion to |TD error|^alpha.",
                           default=False)
  alpha: float = _doc("Prioritized replay: how much priorities count (0 is uniform).", default=0.5)
  beta: float = _doc("Prioritized replay: importance-sampling exponent at the start, annealed to 1 by the end.",
                     default=0.4)
  priority_eps: float = _doc("Prioritized replay: added to |TD error| so no transition has priority 0.",
                             default=1e-6)
  noisy: bool = _doc("Noisy nets (Fortunato et al. 2018): factorised Gaussian dense layers; exploration comes from "
                     "the noise, so epsilon is 0.", default=False)
  noisy_sigma0: float = _doc("Noisy nets: sigma0, the noise scale each layer starts at (times 1/sqrt(fan_in)); "
                             "the papers' 0.5.", default=0.5)
  distributional: bool = _doc("C51 (Bellemare et al. 2017): a categorical return distribution over atoms, "
                              "cross-entropy loss (the 'loss' field is then unused).", default=False)
  atoms: int = _doc("C51: number of atoms of the support.", default=51)
  v_min: float = _doc("C51: smallest return of the support.", default=-10.0)
  v_max: float = _doc("C51: largest return of the support.", default=10.0)
  quantiles: int = _doc("QR-DQN (Dabney et al. 2018): learn this many quantiles of the return per action with the "
                        "quantile Huber loss (the 'loss' field is then unused); 0 is off.", default=0)
  # Pixels: Atari (ALE) and MinAtar
  network: str = _doc("Q-network torso: 'mlp', 'nature_cnn' (Mnih et al. 2015), 'minatar_cnn' (Young & Tian 2019), or "
                      "'auto': nature_cnn for k×84×84 frame stacks, minatar_cnn for 10×10×k frames, else mlp.",
                      default="auto")
  clip_rewards: bool = _doc("Store rewards clipped to [-1, 1] in the replay memory (Nature DQN); logged returns "
                            "stay the game's score.", default=False)
  terminal_on_life_loss: bool = _doc("Atari: store a transition that loses a life as terminal (training only; the "
                                     "game is not reset).", default=False)
  sticky_actions: float = _doc("Atari and MinAtar: probability that the previous action is repeated instead of the "
                               "chosen one (Machado et al. 2018); used for every id instead of its registered "
                               "default (ALE v5: 0.25, NoFrameskip-v4: 0, MinAtar: 0.1).", default=0.0)
  # Evaluation
  eval_freq: int = _doc("Greedy evaluation every this many environment steps (0 disables).", default=10_000)
  eval_episodes: int = _doc("Episodes per greedy evaluation.", default=10)
  eval_seed: int = _doc("Evaluation episode i resets with seed eval_seed + i, the same at every evaluation.",
                        default=10_000)
  stop_at_return: float | None = _doc("End the run after the first periodic evaluation whose mean return is at least "
                                      "this (the policy then handed over is the one evaluated); none: train for the "
                                      "whole total_timesteps.", default=None)
  stop_eval_episodes: int = _doc("Episodes a stop is decided on: when a periodic evaluation reaches stop_at_return, "
                                 "the policy plays more greedy episodes (seeds on from the evaluation's) until this "
                                 "many, and the run stops only if their mean reaches it too. 0: the evaluation's "
                                 "own episodes.", default=0)
  # Snapshots for --resume (they do not change what is learned)
  checkpoint_freq: int = _doc("Write a snapshot for --resume every this many env steps (0: none).", default=10_000)
  keep_checkpoints: int = _doc("How many of the newest snapshots to keep.", default=2)
  checkpoint_buffer: bool = _doc("Include the replay memory in snapshots (without it, a resumed run refills "
                                 "it and is no longer identical to an uninterrupted one).", default=True)

  def __post_init__(self) -> None:
    self._check_types()
    for name in ("total_timesteps", "num_envs", "buffer_size", "batch_size", "train_freq", "gradient_steps",
                 "fused_updates", "target_update_interval", "eval_episodes", "keep_checkpoints", "n_step"):
      if getattr(self, name) < 1: _invalid(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("learning_starts", "eval_freq", "seed", "eval_seed", "max_grad_norm", "checkpoint_freq",
                 "stop_eval_episodes"):
      if getattr(self, name) < 0: _invalid(f"{name} must be >= 0, got {getattr(self, name)}")
    if not self.learning_rate > 0: _invalid(f"learning_rate must be > 0, got {self.learning_rate}")
    if self.batch_size > self.buffer_size:
      _invalid(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
    if self.num_envs > self.total_timesteps:
      _invalid(f"num_envs ({self.num_envs}) must not exceed total_timesteps ({self.total_timesteps})")
    if self.learning_starts >= self.total_timesteps:
      _invalid(f"learning_starts ({self.learning_starts}) must be < total_timesteps ({self.total_timesteps})")
    if not 0.0 <= self.gamma <= 1.0: _invalid(f"gamma must be in [0, 1], got {self.gamma}")
    if not 0.0 < self.tau <= 1.0: _invalid(f"tau must be in (0, 1], got {self.tau}")
    if not 0.0 <= self.exploration_fraction <= 1.0:
      _invalid(f"exploration_fraction must be in [0, 1], got {self.exploration_fraction}")
    for name in ("exploration_initial_eps", "exploration_final_eps"):
      if not 0.0 <= getattr(self, name) <= 1.0: _invalid(f"{name} must be in [0, 1], got {getattr(self, name)}")
    if not self.net_arch or any(h < 1 for h in self.net_arch):
      _invalid(f"net_arch must be one or more positive layer sizes, got {self.net_arch}")
    if self.loss not in ("mse", "huber"): _invalid(f"loss must be 'mse' or 'huber', got {self.loss!r}")
    if self.learning_rate_schedule not in ("constant", "linear"):
      _invalid(f"learning_rate_schedule must be 'constant' or 'linear', got {self.learning_rate_schedule!r}")
    if not self.noisy_sigma0 > 0: _invalid(f"noisy_sigma0 must be > 0, got {self.noisy_sigma0}")
    if not self.adam_eps > 0: _invalid(f"adam_eps must be > 0, got {self.adam_eps}")
    if self.optimizer not in ("adam", "rmsprop", "rmsprop_torch"):
      _invalid(f"optimizer must be 'adam', 'rmsprop' or 'rmsprop_torch', got {self.optimizer!r}")
    if not 0 <= self.momentum < 1: _invalid(f"momentum must be in [0, 1), got {self.momentum}")
    if self.momentum > 0 and self.optimizer != "rmsprop_torch":
      _invalid(f"momentum applies to optimizer 'rmsprop_torch' only, not {self.optimizer!r}")
    if not 0.0 <= self.terminal_fraction < 1.0:
      _invalid(f"terminal_fraction must be in [0, 1) (a share of each minibatch), got {self.terminal_fraction}")
    if self.terminal_fraction and self.prioritized:
      _invalid("terminal_fraction sets apart part of a uniform minibatch; prioritized replay draws by priority instead "
               "(choose one)")
    if not 0.0 <= self.alpha <= 1.0: _invalid(f"alpha must be in [0, 1], got {self.alpha}")
    if not 0.0 <= self.beta <= 1.0: _invalid(f"beta must be in [0, 1], got {self.beta}")
    if not self.priority_eps > 0: _invalid(f"priority_eps must be > 0, got {self.priority_eps}")
    if self.munchausen:
      if not 0.0 < self.munchausen <= 1.0: _invalid(f"munchausen (its α) must be in [0, 1] (0 is off), got {self.munchausen}")
      if not self.munchausen_tau > 0: _invalid(f"munchausen_tau must be > 0, got {self.munchausen_tau}")
      if not self.munchausen_clip < 0: _invalid(f"munchausen_clip must be < 0, got {self.munchausen_clip}")
      if self.double_q: _invalid("munchausen's soft target averages over π; it has no argmax for double_q to replace "
                                  "(add --no-double-q)")
      if self.distributional or self.quantiles: _invalid("munchausen applies to the plain Q head, not to C51 or QR-DQN")
    if self.atoms < 2: _invalid(f"atoms must be >= 2, got {self.atoms}")
    if self.quantiles < 0: _invalid(f"quantiles must be >= 0 (0 is off), got {self.quantiles}")
    if self.quantiles and self.distributional:
      _invalid("distributional (C51) and quantiles (QR-DQN) each learn a return distribution: choose one "
               "(--no-distributional with --preset rainbow)")
    if self.network not in NETWORKS: _invalid(f"network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
    if not 0.0 <= self.sticky_actions <= 1.0: _invalid(f"sticky_actions must be in [0, 1], got {self.sticky_actions}")
    if not self.v_min < self.v_max: _invalid(f"v_min ({self.v_min}) must be < v_max ({self.v_max})")
    if self.stop_at_return is not None and self.eval_freq == 0:
      _invalid(f"stop_at_return ({self.stop_at_return:g}) needs periodic evaluations to stop on, and eval_freq is 0 "
               "(--stop-at-return none trains for the whole budget)")

  def _check_types(self) -> None:
    """Each value has its field's type (ints are fine for floats; JSON lists for net_arch); floats are finite."""
    for f, kind in typing.get_type_hints(Config).items():
      value = getattr(self, f)
      if kind == tuple[int, ...]:
        if not isinstance(value, (tuple, list)) or not all(isinstance(h, int) and not isinstance(h, bool) for h in value):
          _invalid(f"{f} must be a sequence of integers, got {value!r}")
        object.__setattr__(self, f, tuple(value))
      elif kind == float | None and value is None: continue
      elif kind in (float, float | None):
        if isinstance(value, bool) or not isinstance(value, (int, float)): _invalid(f"{f} must be a number, got {value!r}")
        if not math.isfinite(value): _invalid(f"{f} must be finite, got {value!r}")
        object.__setattr__(self, f, float(value))
      elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        _invalid(f"{f} must be an integer, got {value!r}")
      elif kind in (bool, str) and not isinstance(value, kind):
        _invalid(f"{f} must be {'true or false' if kind is bool else 'a string'}, got {value!r}")

  def replace(self, **changes: Any) -> Config:
    """A copy with some fields changed (validated again)."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
    if unknown: _invalid(f"unknown config field(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> Config:
    return cls().replace(**values)


def _invalid(message: str) -> None:
  raise UserError(f"invalid config: {message}")


# ---- presets: TOML files in tinydqn/presets/, one per environment ----

def preset_names() -> list[str]:
  return sorted(p.name.removesuffix(".toml") for p in resources.files("tinydqn.presets").iterdir()
                if p.name.endswith(".toml"))


def _read_preset(name: str) -> dict[str, Any]:
  if name not in preset_names():
    close = difflib.get_close_matches(name, preset_names(), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(preset_names())}"
    raise UserError(f"unknown preset {name!r}{hint}")
  return tomllib.loads(resources.files("tinydqn.presets").joinpath(f"{name}.toml").read_text())


def _fields(table: dict[str, Any]) -> dict[str, Any]:
  values = {k: v for k, v in table.items() if not isinstance(v, dict)}
  if "net_arch" in values: values["net_arch"] = tuple(values["net_arch"])
  return values


def load_preset(name: str) -> dict[str, Any]:
  """The field values a preset sets (its env_id included, unless it is a modifier); not its modifier tables."""
  return _fields(_read_preset(name))


def modifier_tables(name: str) -> dict[str, dict[str, Any]]:
  """An env preset's values for modifier presets: its TOML table `[rainbow]` holds what this environment needs
  with `--preset rainbow` (learning rate, schedule, support ...), values that depend on both and so belong to neither."""
  return {k: _fields(v) for k, v in _read_preset(name).items() if isinstance(v, dict)}


def preset_for_env(env_id: str) -> str | None:
  """The preset tuned for this environment id, if one ships: every Atari id gets `atari`, every MinAtar id `minatar`."""
  if is_atari(env_id): return "atari"
  if is_minatar(env_id): return "minatar"
  return next((n for n in preset_names() if load_preset(n).get("env_id") == env_id), None)


def presets_for(env_id: str | None, preset: str | None) -> list[str]:
  """The presets applied, in order. A preset without an env_id (e.g. 'rainbow') is a modifier: it switches
  algorithm components on top of the environment's own preset, which keeps its scale-dependent values."""
  base = preset_for_env(env_id) if env_id is not None else None
  if preset is None: return [base] if base else []
  if "env_id" in load_preset(preset) or base is None or base == preset: return [preset]
  return [base, preset]


def make_config(env_id: str | None = None, preset: str | None = None, **overrides: Any) -> Config:
  """Defaults, then the preset(s) (see `presets_for`), then the env preset's table for the modifier (e.g. the
  `[rainbow]` table of cartpole.toml), then the overrides, then validation. Overrides that turn evaluation off
  (eval_freq 0) also turn off a preset's stop_at_return, which has nothing left to stop on."""
  names, values = presets_for(env_id, preset), {}
  tables = [_read_preset(name) for name in names]  # each TOML read once: its fields, and (env preset) its tables
  for table in tables: values.update(_fields(table))
  if len(names) == 2: values.update(_fields(tables[0].get(names[1], {})))
  if env_id is not None: values["env_id"] = env_id
  if overrides.get("eval_freq") == 0 and "stop_at_return" not in overrides:
    values.pop("stop_at_return", None)  # a preset's stop needs the evaluations these overrides turn off
  return Config().replace(**{**values, **overrides})
