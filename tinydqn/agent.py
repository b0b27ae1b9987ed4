"""The DQN agent: online and target Q-networks, the optimizer, a jitted gradient step and fast acting."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from tinygrad import Context, Tensor, TinyJit
from tinygrad.nn.optim import Adam, Optimizer
from tinygrad.nn.state import get_state_dict

from tinydqn.buffers import Batch
from tinydqn.config import Config
from tinydqn import program_cache, wide_kernels
from tinydqn.dense import cpu_view, has_cpu_views
from tinydqn.devices import default_device, resolve_device, to_device
from tinydqn.fast import wait_for_device, wide_kernels_wanted
from tinydqn.heads import build_head
from tinydqn.jit_replay import DirectReplay
from tinydqn.networks import (NumpyQ, QNetwork, build_torso, empty_noise, factorized_noise, has_numpy_forward, noisy_sigma0,
                              stored_inputs_first)
from tinydqn.weight_layout import transpose_stored

BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))


def _flat(pairs: list[tuple]) -> list:
  """Noise pairs [(f(ε_in), f(ε_out)), ...] as one flat list, the form they are staged in."""
  return [a for pair in pairs for a in pair]


def noise_names(layers: int) -> list[str]:
  """The jit input names of the noise of `layers` noisy layers, in `_flat` order."""
  return [f"noise{i}_{end}" for i in range(layers) for end in ("in", "out")]


def _pairs(flat: list | tuple) -> list[tuple]:
  """The inverse of `_flat`."""
  return list(zip(flat[0::2], flat[1::2]))


class RMSprop(Optimizer):
  """Centered RMSProp: running means of g and g² decay at `decay`, and the step divides g by the root of their
  variance. Two conventions differ in where ε goes:
  - `eps_inside_root` (DeepMind's Nature DQN code): lr·g / √(E[g²] − E[g]² + ε);
  - otherwise (torch.optim.RMSprop(centered=True)): lr·b, b ← momentum·b + g / (√(E[g²] − E[g]²) + ε), b = that
    quotient without momentum. With ε = 0.01 the floor on the denominator is 0.1 in the first and 0.01 in the
    second, so the same ε and learning rate take steps up to 10× apart."""

  def __init__(self, params: list[Tensor], lr: float, decay: float = 0.95, eps: float = 0.01,
               eps_inside_root: bool = True, momentum: float = 0.0, fused: bool = True):
    super().__init__(params, lr, fused=fused)
    self.decay, self.eps, self.eps_inside_root, self.momentum = decay, eps, eps_inside_root, momentum
    self.mean_sq, self.mean = self._new_optim_param(), self._new_optim_param()
    self.velocity = self._new_optim_param() if momentum > 0 else []

  def _step(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    updates = []
    for i, (t, g) in enumerate(zip(params, grads)):
      self.mean_sq[i].assign(self.decay * self.mean_sq[i] + (1 - self.decay) * g.square())
      self.mean[i].assign(self.decay * self.mean[i] + (1 - self.decay) * g)
      variance = (self.mean_sq[i] - self.mean[i].square()).maximum(0.0)  # ≥ 0 but for rounding
      step = g / ((variance + self.eps).sqrt() if self.eps_inside_root else variance.sqrt() + self.eps)
      if self.momentum > 0: step = self.velocity[i].assign(self.momentum * self.velocity[i] + step)
      updates.append((self.lr * step).cast(t.dtype))
    return updates, self.mean_sq + self.mean + self.velocity


def _jit_capturing_first_call(fn: Callable[[], object]) -> DirectReplay:
  """A TinyJit that captures `fn` on its first call instead of its second, then replays as one direct call where
  it can (`tinydqn.jit_replay`). tinygrad runs a function's first call uncaptured so that one-time work (realizing
  buffers it reads for the first time) stays out of the capture; the agent's jitted functions read only buffers
  realized beforehand (weights, optimizer state, staged inputs), and building a fused step's graph one extra time
  was a second or more of every run's start-up."""
  jit = TinyJit(fn)
  jit.cnt = 1  # tinygrad 0.14: 0 runs uncaptured, 1 captures (and runs the capture), 2+ replay
  return DirectReplay(jit)


FUSED_OPTIMIZER_MAX_PARAMS = 1_000_000


def fused_optimizer(params: list[Tensor]) -> bool:
  """Whether the optimizer keeps its state for all parameters in one buffer. Fused, an update has 8 fewer kernels,
  which matters for small networks; but each step then concatenates all parameters and gradients and splits them
  back, which for the Nature CNN's 1.7M parameters cost more than the launches it saves (BENCHMARKS.md, "Nature CNN
  step")."""
  return sum(p.numel() for p in params) <= FUSED_OPTIMIZER_MAX_PARAMS


def optimizer_layout(arrays: dict[str, np.ndarray], own: dict[str, Tensor], shapes: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
  """`arrays` (a saved state) with its optimizer moments in the layout `own` has: one flat buffer per moment
  (`optimizer.m.0`, fused) or one per parameter (`optimizer.m.0` … `optimizer.m.{n-1}`, in parameter order). A
  checkpoint written before `fused_optimizer` chose by size has the other layout for large networks."""
  out, sizes = dict(arrays), [int(np.prod(shape)) for shape in shapes]
  for key in [k for k in own if k.startswith("optimizer.") and k.endswith(".0")]:
    stem = key[:-2]
    split_here = f"{stem}.1" in own
    if split_here and f"{stem}.1" not in out and key in out and out[key].size == sum(sizes):
      flat = out.pop(key).reshape(-1)
      out.update({f"{stem}.{i}": part.reshape(shape) for i, (part, shape) in
                  enumerate(zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes))})
    elif not split_here and f"{stem}.1" in out:
      out[key] = np.concatenate([out.pop(f"{stem}.{i}").reshape(-1) for i in range(len(shapes))])
  return out


class DQNAgent:
  """Q(·; θ) and Q̂(·; θ⁻), trained from minibatches staged in `self.batch`.

  All jitted functions are built per instance (a TinyJit on a method would be shared by every agent).
  Weights only ever change in place, so the jitted graphs and the numpy views always see current values.
  With noisy nets, the noise is staged like the minibatch: `self.noise` holds f(ε_in), f(ε_out) per noisy
  layer of the online net, then of the target net, drawn from the caller's numpy generator.
  """

  def __init__(self, config: Config, obs_shape: tuple[int, ...], obs_dtype: np.dtype, n_actions: int,
               device: str | None = None, host_views: bool | None = None):
    """`device`: a tinygrad device name; default the CPU, or tinygrad's DEV when set (`resolve_device`).
    `host_views`: stage minibatches and act through zero-copy numpy views of the tensors (default: when
    the device is the CPU, the only one whose memory numpy can share); False uses tinygrad paths only."""
    self.config, self.n_actions = config, n_actions
    self._running = False  # a call was left running on the device (lagged acting): wait before touching its buffers
    program_cache.install()  # CPU kernels built by an earlier process on this machine are read back, not rebuilt
    self.device = resolve_device(device)
    if wide_kernels_wanted(self.device): wide_kernels.install()
    def network() -> QNetwork:
      torso = build_torso(config, obs_shape)
      return QNetwork(torso, build_head(config, torso.features, n_actions, noisy_sigma0(config)))
    with Context(**default_device(self.device)):
      self.online, self.target = network(), network()
      # lagged_acting: a third copy that acting reads, refreshed from θ when a round of gradient steps starts
      self.acting = network() if config.lagged_acting else None
      self.head = self.online.head  # its loss and Q-value reduction are the only per-variant code of the update
      Tensor.realize(*self.online.parameters(), *self.target.parameters(),
                     *(self.acting.parameters() if self.acting is not None else []))
      self._copy_online_to(self.target)  # Q̂ starts as an exact copy of Q
      if self.acting is not None: self._copy_online_to(self.acting)
      self._target_is_copy = True  # θ⁻ == θ: a hard sync now would copy equal values (skipped; see sync_target)
      params = self.online.parameters()  # only θ is optimised; θ⁻ changes only through target syncs
      fused = fused_optimizer(params)
      self.optimizer = Adam(params, lr=config.learning_rate, eps=config.adam_eps, fused=fused) if config.optimizer == "adam" else \
          RMSprop(params, lr=config.learning_rate, eps_inside_root=config.optimizer == "rmsprop", momentum=config.momentum,
                  fused=fused)
      # Jit inputs, preallocated once: the sampler writes into `self.batches[k]`, the jit reads the tensors.
      # A fused call takes `fuse` minibatches (and noise draws), each in its own buffers: the steps' kernels are
      # then the single step's kernels on other buffers (same code, same kernel-search cache entries).
      host = Batch.empty(config.batch_size, obs_shape, obs_dtype)
      self._online_noise_shapes = [layer.shape for layer in self.online.noisy_layers()]
      self._noise_shapes = self._online_noise_shapes * 2  # online's, then target's
      self.fuse = self._fused_steps_per_call(config)
      # Jit inputs are passed by name (`self._input_names`, in the order of each step's list), never by position.
      self._input_names = [*BATCH_FIELDS, *noise_names(len(self._noise_shapes))]
      def step_inputs() -> list[np.ndarray]:
        return [*(getattr(host, name).copy() for name in BATCH_FIELDS), *_flat(empty_noise(self._noise_shapes))]
      staged = [step_inputs() for _ in range(self.fuse)]
      self._inputs = [[to_device(a, self.device).contiguous() for a in step] for step in staged]
      # one realize for all of them and the optimizer state: each separate realize is scheduled and lowered anew
      Tensor.realize(*(t for step in self._inputs for t in step), *self._optimizer_state().values())
    # Weights stored [in, out] (`weight_layout`), by state key and by optimizer parameter: saved state has them [out, in]
    transposed = {id(w) for net in self._nets().values() for w in stored_inputs_first(net)}
    self._transposed_keys = {f"{name}.{k}" for name, net in self._nets().items() for k, t in get_state_dict(net).items()
                             if id(t) in transposed}
    self._transposed_params = [id(p) in transposed for p in self.optimizer.params]
    self._zero_copy = has_cpu_views(self.device) if host_views is None else host_views
    if self._zero_copy and not has_cpu_views(self.device): raise ValueError(f"no host views on {self.device}")
    self._host = [[cpu_view(t) for t in step] for step in self._inputs] if self._zero_copy else staged
    n_batch = len(BATCH_FIELDS)
    self.batches = [Batch(**dict(zip(BATCH_FIELDS, step[:n_batch]))) for step in self._host]
    self.noises = [_pairs(step[n_batch:]) for step in self._host]
    self.batch, self.noise = self.batches[0], self.noises[0]  # what `update` trains on
    self._act_noise = empty_noise(self._online_noise_shapes)
    self._step_inputs = dict(zip(self._input_names, self._inputs[0]))  # what the single step reads, by name
    self._fused_inputs = {f"{k}.{name}": t for k, step in enumerate(self._inputs) for name, t in zip(self._input_names, step)}
    # The staged tensors are not passed to the jits as arguments: like the weights, they are fixed buffers that
    # change only in place, so the captured kernels read their current contents. Passing them would make tinygrad
    # re-derive every argument's view on every call, which cost more than the kernels of a small network's step
    # (BENCHMARKS.md, "Jit call overhead"). The bodies still look each one up by name.
    self._update = _jit_capturing_first_call(lambda: self._update_step(**self._step_inputs))
    self._update_fused = _jit_capturing_first_call(lambda: self._fused_steps(**self._fused_inputs)) if self.fuse > 1 else None
    self._sync = _jit_capturing_first_call(self._sync_step)
    self._numpy_q = NumpyQ(self.online) if self._zero_copy and has_numpy_forward(self.online) else None
    self._acting_q = NumpyQ(self.acting) if self._numpy_q is not None and self.acting is not None else None
    self._acting_copies = [(cpu_view(a), cpu_view(o)) for a, o in zip(self.acting.parameters(), self.online.parameters())] \
        if self._acting_q is not None else []  # (acting, online) host views, for refresh_acting
    self._jit_q: dict[tuple[int, bool], tuple[list[Tensor], Callable[..., Tensor]]] = {}
    self._last_priorities: Tensor | None = None  # per-sample |δ| of the latest step, for prioritized replay

  # ---- learning ----
  def _update_step(self, **inputs: Tensor) -> tuple[Tensor, Tensor]:
    """One gradient step on the minibatch and noise named in `inputs` (see `_input_names`). Everything that
    differs between DQN variants is in the head: its loss, and its reduction to Q-values (for the log)."""
    cfg = self.config
    batch = Batch(**{name: inputs[name] for name in BATCH_FIELDS})
    noise = _pairs([inputs[name] for name in self._input_names[len(BATCH_FIELDS):]])
    online_noise, target_noise = (noise[:len(noise) // 2], noise[len(noise) // 2:]) if noise else (None, None)
    # DEV: any tensor made here without a device (a constant, an optimizer temporary) lands on the agent's, not on
    # tinygrad's own pick. Only the capturing calls run this body; replays cost nothing extra.
    with Context(TRAINING=1, **default_device(self.device)):
      self.optimizer.zero_grad()
      out, next_target = self.online(batch.obs, online_noise), self.target(batch.next_obs, target_noise)
      next_online = self.online(batch.next_obs, online_noise) if cfg.double_q else None
      extra = {"target_at_s": self.target(batch.obs, target_noise)} if self.head.needs_target_at_s else {}
      per_sample, priorities = self.head.loss(out, next_target, next_online, batch, **extra)
      q_taken = self.head.q_taken(out, batch.actions)
      loss = (batch.weights * per_sample).mean()
      loss.backward()
      if cfg.max_grad_norm > 0: self._clip_grad_norm(cfg.max_grad_norm)
      # One schedule for the statistics and the step: realized later, they would read the updated weights.
      stats, priorities = Tensor.stack(loss, q_taken.mean()), priorities.detach()
      Tensor.realize(stats, priorities, *self.optimizer.schedule_step())
    return stats, priorities

  @staticmethod
  def _fused_steps_per_call(config: Config) -> int:
    """How many gradient steps of a burst share one jitted call: the largest divisor of `gradient_steps` up to
    `fused_updates`, so every burst splits into whole calls. Prioritized replay needs each step's priorities
    before the next minibatch is drawn, so it takes one step per call."""
    if config.prioritized: return 1
    steps = config.gradient_steps
    return max(k for k in range(1, min(config.fused_updates, steps) + 1) if steps % k == 0)

  def _fused_steps(self, **inputs: Tensor) -> tuple[Tensor, ...]:
    """`fuse` gradient steps in a row, step k on the k-th staged minibatch (inputs named "k.name"): each step is
    realized before the next is built, so the kernels, and the numbers, are those of `fuse` separate calls."""
    outputs = [self._update_step(**{name: inputs[f"{k}.{name}"] for name in self._input_names}) for k in range(self.fuse)]
    return outputs[-1][0], *(priorities for _, priorities in outputs)

  def _clip_grad_norm(self, max_norm: float) -> None:
    params = self.optimizer.params
    norm = Tensor.stack(*[p.grad.square().sum() for p in params]).sum().sqrt()
    scale = (max_norm / (norm + 1e-6)).minimum(1.0).contiguous()  # computed once, not again in every parameter's kernel
    for p in params: p.grad = p.grad * scale

  def update(self, rng: np.random.Generator | None = None, wait: bool = True) -> Tensor:
    """One gradient step on the minibatch in `self.batch` (with noisy nets, fresh noise from `rng` first).
    Returns a device tensor [loss, mean Q(φ, a)]; read it only when logging (reading waits for the device).
    `self.last_priorities` then gives each sample's |TD error| (C51: its cross-entropy) for prioritized replay,
    read from the jit's output buffer: ask for it before the next step overwrites that buffer.
    `wait=False` returns while the step may still run (see `_ran`)."""
    self._wait_if_running()
    if rng is not None and self.noise: factorized_noise(rng, self._noise_shapes, self.noise)
    self._stage(self._inputs[:1], self._host[:1])
    stats, priorities = self._update()
    self._ran(wait)
    self._last_priorities = priorities
    return stats

  @property
  def last_priorities(self) -> np.ndarray | None:
    """The latest `update`'s per-sample priorities, read when asked for: only prioritized replay needs them, and
    reading costs more than the rest of a small step's host work."""
    return None if self._last_priorities is None else self.read(self._last_priorities)

  def updates(self, count: int, sample: Callable[[Batch], object], rng: np.random.Generator | None = None,
              wait: bool = True) -> Tensor:
    """`count` gradient steps, each on a minibatch that `sample(batch)` writes into the batch it is given (then,
    with noisy nets, fresh noise from `rng`), in that order: the same draws and the same numbers as `count` calls
    of `update`. Whole groups of `self.fuse` steps run as one jitted call. Returns the last step's [loss, mean Q].
    `wait=False` returns while the last call may still run (see `_ran`)."""
    self._wait_if_running()
    stats, fused_calls = None, count // self.fuse if self.fuse > 1 else 0
    single_steps = count - fused_calls * self.fuse
    for call in range(fused_calls):
      for batch, noise in zip(self.batches, self.noises):
        sample(batch)
        if rng is not None and noise: factorized_noise(rng, self._noise_shapes, noise)
      self._stage(self._inputs, self._host)
      stats, *_ = self._update_fused()
      self._ran(wait or call < fused_calls - 1 or single_steps > 0)  # the sampler rewrites the staged batches next
    for k in range(single_steps):
      sample(self.batch)
      stats = self.update(rng, wait=wait or k < single_steps - 1)
    return stats

  def _ran(self, wait: bool) -> None:
    """After a gradient step's call: θ has changed; wait for the device, or (`wait=False`) leave the call running
    and wait only when something next reads θ or rewrites the step's inputs (`_wait_if_running`)."""
    self._target_is_copy = False
    if wait: self._settle()
    else: self._running = self._zero_copy

  def _wait_if_running(self) -> None:
    if self._running: self._settle()

  def refresh_acting(self) -> None:
    """lagged_acting: acting reads θ from here on, waiting first for a call still running. The loop calls it as a
    round of gradient steps starts, so actions until the next round use θ from before this one."""
    self._wait_if_running()
    if self._acting_q is not None:  # a copy between host views: no device work
      for acting, online in self._acting_copies: acting[...] = online
    elif self.acting is not None:
      with Context(**default_device(self.device)): self._copy_online_to(self.acting)
      self._settle()

  def _stage(self, inputs: list[list[Tensor]], host: list[list[np.ndarray]]) -> None:
    """Without host views, copy the staged numpy arrays into the jit's input tensors. Through `to_device`: the
    sampler rewrites these arrays for the next call while an asynchronous backend (CL) may not have read them yet,
    so tinygrad must get copies (issue 17: fused bursts trained on later minibatches)."""
    if self._zero_copy: return
    for ts, arrays in zip(inputs, host):
      for t, a in zip(ts, arrays): t.assign(to_device(a, self.device))
    Tensor.realize(*(t for ts in inputs for t in ts))

  def read(self, t: Tensor) -> np.ndarray:
    """A realized result of this agent's device (a gradient step's [loss, mean Q], its priorities) as a numpy copy:
    read through a host view where there is one, since Tensor.numpy() schedules a copy (hundreds of µs), and the
    loop reads the latest stats at every episode's end."""
    if not self._zero_copy: return t.numpy()
    self._wait_if_running()
    return cpu_view(t).copy()

  def _settle(self) -> None:
    """With host views, wait for the device: numpy is about to read the weights or overwrite the batch, and
    some CPU command queues (tinygrad's HCQ2) run kernels asynchronously. Cheap when nothing is pending."""
    if self._zero_copy: wait_for_device(self.device)
    self._running = False

  def set_learning_rate(self, lr: float) -> None:
    """Changes the optimizer's step size in place (the jitted step reads it from its buffer)."""
    self._wait_if_running()
    if self._zero_copy: cpu_view(self.optimizer.lr)[:] = lr
    else: self.optimizer.lr.assign(Tensor([lr], device=self.device, dtype=self.optimizer.lr.dtype)).realize()

  def _copy_online_to(self, net: QNetwork, tau: float = 1.0) -> None:
    """net ← τ·θ + (1 − τ)·net, in place (a plain copy for τ = 1): the target net's syncs, and the acting copy."""
    pairs = zip(net.parameters(), self.online.parameters())
    Tensor.realize(*[t.assign(o.contiguous() if tau == 1.0 else tau * o + (1.0 - tau) * t) for t, o in pairs])

  def _sync_step(self) -> None:
    with Context(**default_device(self.device)): self._copy_online_to(self.target, self.config.tau)

  def sync_target(self) -> None:
    """θ⁻ ← τ·θ + (1 − τ)·θ⁻ (a hard copy for τ = 1). A hard copy is skipped while θ has not changed since the
    last one: the zoo's schedule syncs every 10 env steps but trains every 256, so most copies would change nothing."""
    hard = self.config.tau == 1.0
    if hard and self._target_is_copy: return
    self._sync()  # queued behind a step that may still run, and waited for with it
    self._settle()
    self._target_is_copy = hard

  # ---- acting ----
  @property
  def acts_in_numpy(self) -> bool:
    """Whether acting runs in numpy on host views of the weights (the CPU device, a torso with a numpy forward)."""
    return self._numpy_q is not None

  def q_values(self, obs: np.ndarray, noise: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Q(φ, ·) for a batch of observations, as numpy (expected returns with a distributional head). Noisy nets
    use their mean weights unless `noise` is given."""
    if self._numpy_q is not None:
      self._wait_if_running()
      return self._numpy_q(obs, noise)
    key, arrays = (obs.shape[0], noise is not None), [obs, *_flat(noise or [])]
    if key not in self._jit_q:
      staged = [to_device(np.zeros_like(a), self.device).contiguous() for a in arrays]
      Tensor.realize(*staged)
      def forward() -> Tensor:  # like the update's jits, reads fixed buffers: no arguments to re-derive per call
        with Context(**default_device(self.device)):
          return self.head.q_values(self.online(staged[0], _pairs(staged[1:]) if noise is not None else None)).realize()
      self._jit_q[key] = (staged, [cpu_view(t) for t in staged] if self._zero_copy else None,
                          _jit_capturing_first_call(forward))
    staged, host, forward = self._jit_q[key]
    if host is not None:  # written in place through host views (the last read waited for the device)
      for view, a in zip(host, arrays): view[...] = a
    else:
      for t, a in zip(staged, arrays): t.assign(to_device(a, self.device))
      Tensor.realize(*staged)
    q = forward()
    self._running = self._zero_copy  # read() waits for it
    return self.read(q)

  def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """ε-greedy for a batch of observations (one per env): each action is random with probability ε,
    otherwise argmax_a Q(φ, a; θ). Noisy nets act greedily on freshly drawn noisy weights."""
    noise = None
    if self._act_noise:
      factorized_noise(rng, self._online_noise_shapes, self._act_noise)
      noise = self._act_noise
    q_values = self._acting_q or self.q_values  # lagged: θ as of the latest refresh_acting, while θ may be changing
    # The draws come first and Q only where an env acts greedily: the same numbers from rng as drawing after it
    # (Q takes none), and no forward pass for a step that explores.
    if len(obs) == 1:  # one env: scalar draws take the same numbers from rng as size-1 arrays, in less time
      if rng.random() < epsilon: return np.array([rng.integers(self.n_actions)])
      return q_values(obs, noise).argmax(axis=1)
    explore = rng.random(len(obs)) < epsilon
    if explore.all(): return rng.integers(self.n_actions, size=len(obs))
    actions = q_values(obs, noise).argmax(axis=1)
    if explore.any(): actions[explore] = rng.integers(self.n_actions, size=int(explore.sum()))
    return actions

  # ---- state ----
  def _optimizer_state(self) -> dict[str, Tensor]:
    return {k: v for k, v in get_state_dict(self.optimizer).items() if not k.startswith("params.")}

  def _nets(self) -> dict[str, QNetwork]:
    return {"online": self.online, "target": self.target, **({"acting": self.acting} if self.acting is not None else {})}

  def _state_tensors(self) -> dict[str, Tensor]:
    """`state_dict`'s tensors as the agent holds them (some weights [in, out])."""
    self._wait_if_running()
    return {**{f"{name}.{k}": v for name, net in self._nets().items() for k, v in get_state_dict(net).items()},
            **{f"optimizer.{k}": v for k, v in self._optimizer_state().items()}}

  def _saved_shapes(self) -> list[tuple[int, ...]]:
    """The optimized parameters' shapes as saved state holds them (weights [out, in])."""
    return [tuple(p.shape[::-1] if flip else p.shape) for p, flip in zip(self.optimizer.params, self._transposed_params)]

  def state_dict(self) -> dict[str, Tensor]:
    """Every tensor that defines the agent: online and target weights, the optimizer's state, and with
    lagged_acting the weights acting reads. Weights are [out, in] as in tinygrad's nn.Linear, on every device:
    where the agent stores some [in, out] (`weight_layout`), every entry is a copy (assigning to one changes
    nothing; `load_state_dict` does)."""
    if not any(self._transposed_params): return self._state_tensors()
    return {k: Tensor(np.array(v), device=self.device) for k, v in self.state_arrays().items()}

  def state_nbytes(self) -> int:
    """Bytes of `state_dict`, without copying anything."""
    return sum(t.nbytes() for t in self._state_tensors().values())

  def state_arrays(self) -> dict[str, np.ndarray]:
    """`state_dict` as numpy arrays: host views on the CPU (valid until the agent next changes; copies where a
    weight, or the optimizer's flat buffer holding its moments, is stored transposed), copies elsewhere."""
    arrays = {k: cpu_view(t) if self._zero_copy else t.numpy() for k, t in self._state_tensors().items()}
    return transpose_stored(arrays, self._transposed_keys, self._transposed_params, [p.shape for p in self.optimizer.params])

  def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
    """Copies values (laid out as `state_dict`'s) into the existing tensors, in place, so jitted functions and
    views see them."""
    own, shapes = self._state_tensors(), self._saved_shapes()
    arrays = transpose_stored(optimizer_layout(arrays, own, shapes), self._transposed_keys, self._transposed_params, shapes)
    if set(own) != set(arrays):
      missing, extra = sorted(set(own) - set(arrays)), sorted(set(arrays) - set(own))
      raise ValueError(f"state does not match this agent (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, t in own.items():
      if tuple(arrays[name].shape) != t.shape:
        raise ValueError(f"{name}: shape {tuple(arrays[name].shape)} does not match the agent's {t.shape}")
      t.assign(to_device(arrays[name], self.device).cast(t.dtype))
    Tensor.realize(*own.values())
    self._settle()
    self._target_is_copy = False  # the loaded θ⁻ may lag θ (a snapshot between syncs)
