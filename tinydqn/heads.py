"""Heads: what a Q-learning variant puts on the torso's features, and how it learns.

A head owns its layers (one output per action and per `outputs`; with `dueling`, a value stream V beside the
advantage stream A, combined as V + A − mean(A) per output, Wang et al. 2016), its tinygrad forward pass, a
numpy forward pass for fast acting on the CPU, the reduction from its output to Q-values, and its loss:

    loss(online output at s, target output at s', online output at s' or None, batch) -> (per-sample loss, priority)

(a head that sets `needs_target_at_s` also gets the target output at s, as `target_at_s`).
The agent's jitted step calls only these, so a new variant is a new head here and nothing in the agent, the
loop or the buffers. `batch` holds tensors named as `buffers.Batch`: actions, rewards R_j (n-step returns),
discounts (γᵏ, 0 after a terminal) and the importance weights the agent applies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from tinygrad import Tensor
from tinygrad.function import function

from tinydqn.buffers import Batch
from tinydqn.dense import Noise, apply_dense, dense, dense_views, numpy_dense

if TYPE_CHECKING:
  from tinydqn.config import Config


def td_target(rewards: Tensor, discounts: Tensor, next_q_target: Tensor, next_q_online: Tensor | None = None) -> Tensor:
  """y_j = R_j + discount_j · Q̂(φ_{j+1}, a') — equation 3 with the Nature target network.

  For one-step transitions R_j = r_j and discount_j = γ·(1 − terminated_j): only a true terminal stops
  bootstrapping, a time-limit truncation does not. With n-step returns R_j sums n discounted rewards and the
  discount is γⁿ (see `ReplayBuffer.n_step_returns`). DQN takes a' = argmax Q̂(φ_{j+1}, ·); Double DQN
  (van Hasselt et al. 2016) passes `next_q_online` and takes a' = argmax Q(φ_{j+1}, ·; θ). The result is
  detached: y_j is a constant of the gradient step, as in the paper.
  """
  if next_q_online is None: next_v = next_q_target.max(axis=1)
  else: next_v = (next_q_target * next_q_online.argmax(axis=1).one_hot(next_q_target.shape[1])).sum(axis=1)
  return (rewards + discounts * next_v).detach()


def td_errors(q_taken: Tensor, y: Tensor, kind: str) -> Tensor:
  """Per-sample (y − Q)² ('mse', equation 3 of the paper) or Huber with δ=1 ('huber': the Nature error clipping)."""
  err = y - q_taken
  if kind == "mse": return err.square()
  return (err.abs() < 1.0).where(0.5 * err.square(), err.abs() - 0.5)


def td_loss(q_taken: Tensor, y: Tensor, kind: str) -> Tensor:
  """The mean of `td_errors`."""
  return td_errors(q_taken, y, kind).mean()


def categorical_projection(rewards: Tensor, discounts: Tensor, next_probs: Tensor, v_min: float, v_max: float) -> Tensor:
  """C51's target distribution (Bellemare et al. 2017, Algorithm 1) on the support z_i = v_min + iΔz: each atom
  z_j moves to Tz_j = clip(R + discount·z_j, v_min, v_max), and its probability p_j is split between the two
  nearest atoms in proportion to closeness. Written as m_i = Σ_j p_j · max(0, 1 − |b_j − i|) with
  b_j = (Tz_j − v_min)/Δz, which is that split (all of p_j to atom i when b_j = i exactly) without a scatter."""
  atoms = next_probs.shape[-1]
  delta = (v_max - v_min) / (atoms - 1)
  support = Tensor.linspace(v_min, v_max, atoms)
  tz = (rewards.unsqueeze(1) + discounts.unsqueeze(1) * support.unsqueeze(0)).clip(v_min, v_max)
  # [batch, atoms]: where each moved atom lands, in units of atoms; stored, or the [batch, atoms, atoms] product
  # below recomputes it for every atom it is compared with
  b = ((tz - v_min) / delta).contiguous()
  # compared with a multiple of 8 atoms, the extra ones dropped: a vector tile then divides the output row (on the
  # CPU, 51 atoms ran in scalar code)
  compared = -(-atoms // 8) * 8
  closeness = (1.0 - (b.unsqueeze(2) - Tensor.arange(compared).float()).abs()).relu()
  return (next_probs.unsqueeze(2) * closeness).sum(axis=1).detach().contiguous()[:, :atoms].contiguous()


class Head:
  """The dense layers on the torso's features: `outputs` values per action ([batch, actions] when it is 1,
  else [batch, actions, outputs]). Subclasses say what the outputs mean: `q_values`, `numpy_q_values`, `loss`."""
  needs_target_at_s = False  # whether `loss` also takes the target net's output at s (`target_at_s`)

  def __init__(self, features: int, n_actions: int, outputs: int = 1, dueling: bool = False, sigma0: float = 0.0):
    self.n_actions, self.outputs = n_actions, outputs
    self.advantage = dense(features, n_actions * outputs, sigma0)
    self.value = dense(features, outputs, sigma0) if dueling else None

  def layers(self) -> dict[str, object]:
    """The head's layers by the names checkpoints store them under (beside the torso's)."""
    return {"advantage": self.advantage, "value": self.value}

  def __call__(self, x: Tensor, noise: Noise | None) -> Tensor:
    adv = apply_dense(self.advantage, x, noise)
    if self.outputs > 1: adv = adv.reshape(-1, self.n_actions, self.outputs)
    if self.value is None: return adv
    value = apply_dense(self.value, x, noise)
    if self.outputs > 1: value = value.reshape(-1, 1, self.outputs)
    return value + adv - adv.mean(axis=1, keepdim=True)

  def numpy_forward(self) -> Callable[[np.ndarray, Iterator | None], np.ndarray]:
    """The same output in numpy on zero-copy views of the weights (CPU device only). A head without one sets
    `numpy_forward = None`, and the agent then acts through tinygrad."""
    advantage = dense_views(self.advantage)
    value = dense_views(self.value) if self.value is not None else None
    n_actions, outputs = self.n_actions, self.outputs
    def forward(x: np.ndarray, noise: Iterator | None) -> np.ndarray:
      adv = numpy_dense(advantage, x, noise)
      if outputs > 1: adv = adv.reshape(-1, n_actions, outputs)
      if value is None: return adv
      v = numpy_dense(value, x, noise)
      if outputs > 1: v = v.reshape(-1, 1, outputs)
      return v + adv - adv.mean(axis=1, keepdims=True)
    return forward

  def q_values(self, out: Tensor) -> Tensor:
    """[batch, actions] Q-values from the head's output."""
    raise NotImplementedError

  def numpy_q_values(self, out: np.ndarray) -> np.ndarray:
    """`q_values` in numpy, for the numpy forward pass."""
    raise NotImplementedError

  def q_taken(self, out: Tensor, actions: Tensor) -> Tensor:
    """Q(s, a) of the actions taken, for the log (mean Q)."""
    return (self.q_values(out) * actions.one_hot(self.n_actions)).sum(axis=1)

  def loss(self, out: Tensor, next_target: Tensor, next_online: Tensor | None, batch: Batch) -> tuple[Tensor, Tensor]:
    """(per-sample loss, per-sample priority for prioritized replay). `next_online` is given with Double DQN."""
    raise NotImplementedError


class QHead(Head):
  """One Q-value per action (DQN), trained on the TD error to y = R + discount·Q̂(s', a') (`td_target`) with the
  squared error or Huber (`kind`); the priority is |y − Q(s, a)|."""

  def __init__(self, features: int, n_actions: int, dueling: bool = False, sigma0: float = 0.0, kind: str = "huber"):
    super().__init__(features, n_actions, 1, dueling, sigma0)
    self.kind = kind

  def q_values(self, out: Tensor) -> Tensor: return out

  def numpy_q_values(self, out: np.ndarray) -> np.ndarray: return out

  def loss(self, out: Tensor, next_target: Tensor, next_online: Tensor | None, batch: Batch,
           target_at_s: Tensor | None = None) -> tuple[Tensor, Tensor]:
    q_taken = (out * batch.actions.one_hot(self.n_actions)).sum(axis=1)
    y = self.target(next_target, next_online, batch, target_at_s)
    return td_errors(q_taken, y, self.kind), (y - q_taken).abs()

  def target(self, next_target: Tensor, next_online: Tensor | None, batch: Batch, target_at_s: Tensor | None) -> Tensor:
    """y per sample (detached): `td_target`, equation 3."""
    return td_target(batch.rewards, batch.discounts, next_target, next_online)


def scaled_log_policy(q: Tensor, tau: float) -> Tensor:
  """τ·log softmax(q/τ) over actions, computed from q − max q so that a small τ does not overflow."""
  advantage = q - q.max(axis=1, keepdim=True)
  return advantage - tau * (advantage / tau).exp().sum(axis=1, keepdim=True).log()


class MunchausenHead(QHead):
  """Munchausen DQN (Vieillard et al. 2020), QHead with another target: π = softmax(Q̂/τ) of the target net, and
  y = R + α·clip(τ·log π(a|s), l₀, 0) + discount·Σ_a' π(a'|s')·(Q̂(s', a') − τ·log π(a'|s')). The bonus pushes down
  the actions not taken by the target's greedy policy, widening the gap between the best action and the rest;
  it needs the target net at s as well (`needs_target_at_s`)."""
  needs_target_at_s = True

  def __init__(self, features: int, n_actions: int, alpha: float, tau: float, clip: float, dueling: bool = False,
               sigma0: float = 0.0, kind: str = "huber"):
    super().__init__(features, n_actions, dueling, sigma0, kind)
    self.alpha, self.tau, self.clip = alpha, tau, clip

  def target(self, next_target: Tensor, next_online: Tensor | None, batch: Batch, target_at_s: Tensor | None) -> Tensor:
    taken = batch.actions.one_hot(self.n_actions)
    bonus = (scaled_log_policy(target_at_s, self.tau) * taken).sum(axis=1).clip(self.clip, 0.0)
    next_log_pi = scaled_log_policy(next_target, self.tau)
    soft_next_v = ((next_log_pi / self.tau).exp() * (next_target - next_log_pi)).sum(axis=1)
    return (batch.rewards + self.alpha * bonus + batch.discounts * soft_next_v).detach()


def _shifted_exp(logits: Tensor) -> tuple[Tensor, Tensor]:
  """(x − max x, exp(x − max x)) over the last axis, the exponentials stored: computed in a kernel of their own, the
  CPU's wide kernels vectorise them; inside the reduction that sums them (tinygrad's softmax) they ran in scalar code,
  83 against 13 µs for C51's 128 × 3 × 51 logits (BENCHMARKS.md, "Backward passes written out")."""
  shifted = logits - logits.max(axis=-1, keepdim=True).detach()
  return shifted, shifted.exp().contiguous()


def atom_softmax(logits: Tensor) -> Tensor:
  """softmax over the last axis (a distribution's atoms)."""
  _, exps = _shifted_exp(logits)
  return exps / exps.sum(axis=-1, keepdim=True)


def _atom_log_softmax_backward(grad_uop, call) -> tuple:
  # d log p_i / d x_j = δ_ij − p_j, with p from stored exponentials: autograd would differentiate exp through the
  # exp itself, recomputed in scalar code inside the backward kernel (83 µs for C51's logits on Acrobot)
  grad = Tensor(grad_uop)
  return ((grad - atom_softmax(Tensor(call.src[1])) * grad.sum(axis=-1, keepdim=True)).uop,)


@function(grad_fxn=_atom_log_softmax_backward)
def atom_log_softmax(logits: Tensor) -> Tensor:
  """log softmax over the last axis (a distribution's atoms)."""
  shifted, exps = _shifted_exp(logits)
  return shifted - exps.sum(axis=-1, keepdim=True).log()


class CategoricalHead(Head):
  """C51 (Bellemare et al. 2017): logits of a categorical distribution over `atoms` returns z_i evenly spaced on
  [v_min, v_max] per action; Q = Σ p_i z_i. Loss: the cross-entropy between the projected target distribution
  and that of the action taken; the priority is the same cross-entropy (as in the Rainbow paper: the KL up to
  the target's entropy)."""

  def __init__(self, features: int, n_actions: int, atoms: int, v_min: float, v_max: float, dueling: bool = False,
               sigma0: float = 0.0):
    super().__init__(features, n_actions, atoms, dueling, sigma0)
    self.v_min, self.v_max = v_min, v_max
    self.support_numpy = np.linspace(v_min, v_max, atoms, dtype=np.float32)
    self.support = Tensor(self.support_numpy).realize()  # on the device the network is built on

  def expectation(self, probs: Tensor) -> Tensor:
    """Σ_i p_i z_i over the last axis: the one place the expected return of a distribution is taken."""
    return (probs * self.support).sum(axis=-1)

  def q_values(self, out: Tensor) -> Tensor: return self.expectation(atom_softmax(out))

  def q_taken(self, out: Tensor, actions: Tensor) -> Tensor:
    return self.expectation(self._log_p_taken(out, actions).exp())  # the loss's log-probabilities, shared

  def _log_p_taken(self, out: Tensor, actions: Tensor) -> Tensor:
    """log p_i(s, a) of the actions taken, [batch, atoms]."""
    return (atom_log_softmax(out) * actions.one_hot(self.n_actions).unsqueeze(2)).sum(axis=1)

  def numpy_q_values(self, out: np.ndarray) -> np.ndarray:
    p = np.exp(out - out.max(axis=2, keepdims=True))
    return (p * self.support_numpy).sum(axis=2) / p.sum(axis=2)

  def loss(self, out: Tensor, next_target: Tensor, next_online: Tensor | None, batch: Batch) -> tuple[Tensor, Tensor]:
    log_p = self._log_p_taken(out, batch.actions)
    next_probs = atom_softmax(next_target)
    chooser = atom_softmax(next_online) if next_online is not None else next_probs  # Double DQN: online picks a'
    best = self.expectation(chooser).argmax(axis=1).one_hot(self.n_actions).unsqueeze(2)
    next_best = (next_probs * best).sum(axis=1).contiguous()
    target_probs = categorical_projection(batch.rewards, batch.discounts, next_best, self.v_min, self.v_max)
    cross_entropy = -(target_probs * log_p).sum(axis=1)
    return cross_entropy, cross_entropy


def quantile_midpoints(n: int) -> np.ndarray:
  """τ̂_i = (τ_i + τ_{i+1}) / 2 = (2i + 1) / 2N, i = 0 … N−1: the quantile levels QR-DQN learns (Dabney et al. 2018,
  Lemma 2: for N equal-probability Diracs these minimise the 1-Wasserstein distance to the true distribution)."""
  return ((2 * np.arange(n) + 1) / (2 * n)).astype(np.float32)


def quantile_huber_loss(theta: Tensor, target: Tensor, tau_hat: Tensor, kappa: float = 1.0) -> Tensor:
  """Per sample Σ_i mean_j ρ^κ_τ̂i(u_ij), u_ij = Tθ_j − θ_i (Dabney et al. 2018, eq. 10 and Algorithm 1), with
  ρ^κ_τ(u) = |τ − 1{u < 0}| · L_κ(u) / κ and L_κ the Huber loss (½u² for |u| ≤ κ, else κ(|u| − ½κ)).
  `theta` [batch, N] are the online quantiles of the actions taken, `target` [batch, N] the (detached) target
  quantiles, `tau_hat` [N] the levels of `theta`."""
  u = target.unsqueeze(1) - theta.unsqueeze(2)  # [batch, i, j]
  huber = (u.abs() <= kappa).where(0.5 * u.square(), kappa * (u.abs() - 0.5 * kappa))
  weight = (tau_hat.reshape(1, -1, 1) - (u < 0).float()).abs()  # the asymmetry that makes θ_i the τ̂_i-quantile
  return (weight * huber / kappa).mean(axis=2).sum(axis=1)


class QuantileHead(Head):
  """QR-DQN (Dabney et al. 2018): N quantiles θ_1 … θ_N of the return per action, at the levels τ̂_i
  (`quantile_midpoints`); Q = mean_i θ_i. Target quantiles Tθ_j = R + discount·θ̂_j(s', a*), a* = argmax of the
  target net's Q (Double DQN: the online net's); loss and priority: the quantile Huber loss (κ = 1)."""

  def __init__(self, features: int, n_actions: int, quantiles: int, dueling: bool = False, sigma0: float = 0.0):
    super().__init__(features, n_actions, quantiles, dueling, sigma0)
    self.tau_hat = Tensor(quantile_midpoints(quantiles)).realize()  # on the device the network is built on

  def q_values(self, out: Tensor) -> Tensor: return out.mean(axis=2)

  def numpy_q_values(self, out: np.ndarray) -> np.ndarray: return out.mean(axis=2)

  def loss(self, out: Tensor, next_target: Tensor, next_online: Tensor | None, batch: Batch) -> tuple[Tensor, Tensor]:
    theta = (out * batch.actions.one_hot(self.n_actions).unsqueeze(2)).sum(axis=1)
    chooser = next_online if next_online is not None else next_target
    best = self.q_values(chooser).argmax(axis=1).one_hot(self.n_actions).unsqueeze(2)
    target = (batch.rewards.unsqueeze(1) + batch.discounts.unsqueeze(1) * (next_target * best).sum(axis=1)).detach()
    per_sample = quantile_huber_loss(theta, target, self.tau_hat)
    return per_sample, per_sample


def build_head(config: Config, features: int, n_actions: int, sigma0: float = 0.0) -> Head:
  """The head `config` asks for on `features` torso outputs."""
  if config.quantiles: return QuantileHead(features, n_actions, config.quantiles, config.dueling, sigma0)
  if config.distributional:
    return CategoricalHead(features, n_actions, config.atoms, config.v_min, config.v_max, config.dueling, sigma0)
  if config.munchausen:
    return MunchausenHead(features, n_actions, config.munchausen, config.munchausen_tau, config.munchausen_clip,
                          config.dueling, sigma0, config.loss)
  return QHead(features, n_actions, config.dueling, sigma0, config.loss)
