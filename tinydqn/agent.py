"""The DQN agent: online and target Q-networks, the optimizer, a jitted gradient step and fast acting."""
from __future__ import annotations

from typing import Callable

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes
from tinygrad.nn.optim import Adam, Optimizer
from tinygrad.nn.state import get_state_dict

from tinydqn.buffers import Batch
from tinydqn.config import Config
from tinydqn.networks import NumpyQ, QNetwork, cpu_view, has_cpu_views


def td_target(rewards: Tensor, terminated: Tensor, next_q_target: Tensor, gamma: float,
              next_q_online: Tensor | None = None) -> Tensor:
  """y_j = r_j + γ·(1 − terminated_j)·Q̂(φ_{j+1}, a') — equation 3 with the Nature target network.

  DQN takes a' = argmax Q̂(φ_{j+1}, ·); Double DQN (van Hasselt et al. 2016) passes `next_q_online` and takes
  a' = argmax Q(φ_{j+1}, ·; θ). Only a true terminal stops bootstrapping: a time-limit truncation does not.
  The result is detached: y_j is a constant of the gradient step, as in the paper.
  """
  if next_q_online is None: next_v = next_q_target.max(axis=1)
  else: next_v = (next_q_target * next_q_online.argmax(axis=1).one_hot(next_q_target.shape[1])).sum(axis=1)
  return (rewards + gamma * (1.0 - terminated) * next_v).detach()


def td_loss(q_taken: Tensor, y: Tensor, kind: str) -> Tensor:
  """Mean of (y − Q)² ('mse'), or of the Huber function with δ=1 ('huber': the Nature paper's error clipping)."""
  err = y - q_taken
  if kind == "mse": return err.square().mean()
  return (err.abs() < 1.0).where(0.5 * err.square(), err.abs() - 0.5).mean()


class RMSprop(Optimizer):
  """Centered RMSProp as in the Nature DQN: decay 0.95, ε = 0.01 inside the square root."""

  def __init__(self, params: list[Tensor], lr: float, decay: float = 0.95, eps: float = 0.01, fused: bool = True):
    super().__init__(params, lr, fused=fused)
    self.decay, self.eps = decay, eps
    self.mean_sq, self.mean = self._new_optim_param(), self._new_optim_param()

  def _step(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    updates = []
    for i, (t, g) in enumerate(zip(params, grads)):
      self.mean_sq[i].assign(self.decay * self.mean_sq[i] + (1 - self.decay) * g.square())
      self.mean[i].assign(self.decay * self.mean[i] + (1 - self.decay) * g)
      updates.append((self.lr * g / (self.mean_sq[i] - self.mean[i].square() + self.eps).sqrt()).cast(t.dtype))
    return updates, self.mean_sq + self.mean


class DQNAgent:
  """Q(·; θ) and Q̂(·; θ⁻), trained from minibatches staged in `self.batch`.

  All jitted functions are built per instance (a TinyJit on a method would be shared by every agent).
  Weights only ever change in place, so the jitted graphs and the numpy views always see current values.
  """

  def __init__(self, config: Config, obs_shape: tuple[int, ...], obs_dtype: np.dtype, n_actions: int,
               device: str | None = None, host_views: bool | None = None):
    """`host_views`: stage minibatches and act through zero-copy numpy views of the tensors (default: when
    the device is the CPU, the only one whose memory numpy can share); False uses tinygrad paths only."""
    self.config, self.n_actions = config, n_actions
    self.device = Device.canonicalize(device)
    obs_dim = int(np.prod(obs_shape))
    with Context(DEV=self.device):
      self.online = QNetwork(obs_dim, n_actions, config.net_arch, config.dueling)
      self.target = QNetwork(obs_dim, n_actions, config.net_arch, config.dueling)
      Tensor.realize(*self.online.parameters(), *self.target.parameters())
      self._copy_online_to_target(tau=1.0)  # Q̂ starts as an exact copy of Q
      params = self.online.parameters()  # only θ is optimised; θ⁻ changes only through target syncs
      # fused: the optimizer keeps its state for all parameters in one buffer (8 fewer kernels per update)
      self.optimizer = Adam(params, lr=config.learning_rate, fused=True) if config.optimizer == "adam" else \
          RMSprop(params, lr=config.learning_rate, fused=True)
      # Minibatch inputs, preallocated once: the sampler writes into `self.batch`, the jit reads the tensors.
      host = Batch.empty(config.batch_size, obs_shape, obs_dtype)
      self._batch_tensors = [Tensor(a, device=self.device).contiguous().realize() for a in vars(host).values()]
      Tensor.realize(*self._optimizer_state().values())
    self._zero_copy = has_cpu_views(self.device) if host_views is None else host_views
    if self._zero_copy and not has_cpu_views(self.device): raise ValueError(f"no host views on {self.device}")
    self.batch = Batch(*(cpu_view(t) for t in self._batch_tensors)) if self._zero_copy else host
    self._update = TinyJit(self._update_step)
    self._sync = TinyJit(lambda: self._copy_online_to_target(config.tau))
    self._numpy_q = NumpyQ(self.online) if self._zero_copy else None
    self._jit_q: dict[int, tuple[Tensor, Callable[[Tensor], Tensor]]] = {}

  # ---- learning ----
  def _update_step(self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor,
                   terminated: Tensor) -> Tensor:
    cfg = self.config
    with Context(TRAINING=1):
      self.optimizer.zero_grad()
      q_taken = (self.online(obs) * actions.one_hot(self.n_actions)).sum(axis=1)
      next_q_online = self.online(next_obs) if cfg.double_q else None
      y = td_target(rewards, terminated, self.target(next_obs), cfg.gamma, next_q_online)
      loss = td_loss(q_taken, y, cfg.loss)
      loss.backward()
      if cfg.max_grad_norm > 0: self._clip_grad_norm(cfg.max_grad_norm)
      # One schedule for the statistics and the step: realized later, they would read the updated weights.
      stats = Tensor.stack(loss, q_taken.mean())
      Tensor.realize(stats, *self.optimizer.schedule_step())
    return stats

  def _clip_grad_norm(self, max_norm: float) -> None:
    params = self.optimizer.params
    norm = Tensor.stack(*[p.grad.square().sum() for p in params]).sum().sqrt()
    scale = (max_norm / (norm + 1e-6)).minimum(1.0)
    for p in params: p.grad = p.grad * scale

  def update(self) -> Tensor:
    """One gradient step on the minibatch in `self.batch`. Returns a device tensor [loss, mean Q(φ, a)];
    read it only when logging (reading it waits for the device)."""
    if not self._zero_copy:
      for t, a in zip(self._batch_tensors, vars(self.batch).values()): t.assign(Tensor(a, device=self.device))
      Tensor.realize(*self._batch_tensors)
    stats = self._update(*self._batch_tensors)
    self._settle()
    return stats

  def _settle(self) -> None:
    """With host views, wait for the device: numpy is about to read the weights or overwrite the batch, and
    some CPU command queues (tinygrad's HCQ2) run kernels asynchronously. ≈5 µs when nothing is pending."""
    if self._zero_copy: Device[self.device].synchronize()

  def set_learning_rate(self, lr: float) -> None:
    """Changes the optimizer's step size in place (the jitted step reads it from its buffer)."""
    if self._zero_copy: cpu_view(self.optimizer.lr)[:] = lr
    else: self.optimizer.lr.assign(Tensor([lr], device=self.device, dtype=self.optimizer.lr.dtype)).realize()

  def _copy_online_to_target(self, tau: float) -> None:
    pairs = zip(self.target.parameters(), self.online.parameters())
    Tensor.realize(*[t.assign(o.contiguous() if tau == 1.0 else tau * o + (1.0 - tau) * t) for t, o in pairs])

  def sync_target(self) -> None:
    """θ⁻ ← τ·θ + (1 − τ)·θ⁻ (a hard copy for τ = 1)."""
    self._sync()
    self._settle()

  # ---- acting ----
  def q_values(self, obs: np.ndarray) -> np.ndarray:
    """Q(φ, ·) for a batch of observations, as numpy."""
    if self._numpy_q is not None: return self._numpy_q(obs)
    n = obs.shape[0]
    if n not in self._jit_q:
      staged = Tensor(np.zeros_like(obs), device=self.device).contiguous().realize()
      self._jit_q[n] = (staged, TinyJit(lambda x: self.online(x).realize()))
    staged, forward = self._jit_q[n]
    staged.assign(Tensor(obs, device=self.device)).realize()
    return forward(staged).numpy()

  def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """ε-greedy for a batch of observations (one per env): each action is random with probability ε,
    otherwise argmax_a Q(φ, a; θ)."""
    actions = self.q_values(obs).argmax(axis=1)
    explore = rng.random(len(actions)) < epsilon
    if explore.any(): actions[explore] = rng.integers(self.n_actions, size=int(explore.sum()))
    return actions

  # ---- state ----
  def _optimizer_state(self) -> dict[str, Tensor]:
    return {k: v for k, v in get_state_dict(self.optimizer).items() if not k.startswith("params.")}

  def state_dict(self) -> dict[str, Tensor]:
    """Every tensor that defines the agent: online and target weights and the optimizer's state."""
    return {**{f"online.{k}": v for k, v in get_state_dict(self.online).items()},
            **{f"target.{k}": v for k, v in get_state_dict(self.target).items()},
            **{f"optimizer.{k}": v for k, v in self._optimizer_state().items()}}

  def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
    """Copies values into the existing tensors, in place, so jitted functions and views see them."""
    own = self.state_dict()
    if set(own) != set(arrays):
      missing, extra = sorted(set(own) - set(arrays)), sorted(set(arrays) - set(own))
      raise ValueError(f"state does not match this agent (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, t in own.items():
      if tuple(arrays[name].shape) != t.shape:
        raise ValueError(f"{name}: shape {tuple(arrays[name].shape)} does not match the agent's {t.shape}")
      t.assign(Tensor(np.ascontiguousarray(arrays[name]), device=self.device).cast(t.dtype))
    Tensor.realize(*own.values())
    self._settle()
