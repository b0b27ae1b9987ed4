"""Where a run's TD error lives: every transition in a snapshot's replay memory, with its squared TD error
y − Q(φ, a) under the snapshot's own online and target nets (the training target: n-step returns and Double DQN
as configured), grouped two ways: by how many steps before a true terminal it was taken, and by when it was
stored (four equal slices of the memory, oldest first).

    .venv/bin/python benchmarks/td_errors_near_ends.py RUN_DIR [RUN_DIR ...] [--step 40000]

For single-env MLP runs on the CPU without C51 or noisy nets (CartPole, Acrobot); the snapshot must hold its
replay memory.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tinydqn.buffers import ReplayBuffer
from tinydqn.checkpoint import load_checkpoint
from tinydqn.networks import NumpyQ
from tinydqn.snapshot import Snapshot, load_latest_snapshot, load_snapshot, snapshot_dirs, snapshot_name

BINS = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 10), (11, 50), (51, None)]  # steps before the terminal; None: no end in sight
AGE_SLICES = 4


def steps_to_terminal(terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
  """For the transitions of one env in the order they were stored: how many transitions later each one's episode
  terminates (0: this one); -1 when it ends by truncation or has not ended yet."""
  out, ahead = np.empty(len(terminated), np.int64), -1
  for i in range(len(terminated) - 1, -1, -1):
    ahead = 0 if terminated[i] else -1 if truncated[i] or ahead < 0 else ahead + 1
    out[i] = ahead
  return out


def load(run_dir: Path, step: int | None) -> Snapshot:
  ckpt = run_dir / "checkpoints"
  if step is None: return load_latest_snapshot(ckpt)
  path = ckpt / snapshot_name(step)
  if path not in snapshot_dirs(ckpt): raise SystemExit(f"{ckpt} has no snapshot of step {step}")
  return load_snapshot(path)


def squared_td_errors(run_dir: Path, snap: Snapshot) -> tuple[ReplayBuffer, np.ndarray, np.ndarray, np.ndarray, int]:
  """The memory, (y − Q)², Q and y of every stored transition, and the run's n."""
  checkpoint = load_checkpoint(snap.path / "agent.json")  # a snapshot's agent is an ordinary checkpoint
  config = checkpoint.config
  if config.num_envs != 1 or config.distributional or config.noisy or snap.replay is None:
    raise SystemExit(f"{run_dir}: needs one env, no C51, no noisy nets and a snapshot with its replay memory")
  memory = ReplayBuffer(config.buffer_size, checkpoint.obs_shape, checkpoint.obs_dtype, 1, config.n_step, config.gamma)
  memory.load_state_dict(snap.replay)
  agent = checkpoint.make_agent()
  idx = np.arange(memory.size)
  returns, discounts, last = memory.n_step_returns(idx)
  q = agent.q_values(memory.obs[idx])[idx, memory.actions[idx]]
  next_obs = memory.next_obs[last]
  next_target = NumpyQ(agent.target)(next_obs)
  chooser = agent.q_values(next_obs) if config.double_q else next_target
  y = returns + discounts * next_target[idx, chooser.argmax(axis=1)]
  return memory, (y - q) ** 2, q, y, config.n_step


def table(header: str, groups: list[tuple[str, np.ndarray]], sq: np.ndarray, q: np.ndarray, y: np.ndarray) -> None:
  print(f"| {header} | transitions | mean (y − Q)² | share of all | mean Q | mean y |")
  print("|---|---:|---:|---:|---:|---:|")
  for label, m in groups:
    if not m.any(): print(f"| {label} | 0 | - | - | - | - |")  # e.g. a small memory holding only successful episodes
    else: print(f"| {label} | {m.sum()} | {sq[m].mean():.2f} | {sq[m].sum() / sq.sum():.2f} | {q[m].mean():.1f} | {y[m].mean():.1f} |")


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("run_dirs", nargs="+", type=Path)
  ap.add_argument("--step", type=int, default=None, help="the snapshot of this step [default: the newest]")
  args = ap.parse_args()
  for run_dir in args.run_dirs:
    snap = load(run_dir, args.step)
    memory, sq, q, y, n_step = squared_td_errors(run_dir, snap)
    print(f"\n{run_dir} (step {snap.step}, n_step {n_step}, mean squared TD error {sq.mean():.2f})\n")
    # Rows in the order they were stored (the oldest is at `pos` once the ring has wrapped); row k of that order
    # was stored at env step snap.step − size + k (one env).
    by_time = (np.arange(memory.size) + memory.pos) % memory.size if memory.size == memory.capacity else np.arange(memory.size)
    distance = np.empty(memory.size, np.int64)
    distance[by_time] = steps_to_terminal(memory.terminated[by_time], memory.truncated[by_time])
    by_distance = []
    for lo, hi in BINS:
      label = f"{lo}" if lo == hi else f"{lo}–{hi}" if hi is not None else f"≥ {lo}, or none"
      by_distance.append((label, (distance >= lo) | (distance < 0) if hi is None else (distance >= lo) & (distance <= hi)))
    table("steps before a terminal", by_distance, sq, q, y)
    age = np.empty(memory.size, np.int64)
    age[by_time] = np.arange(memory.size)
    first = snap.step - memory.size
    bounds = np.linspace(0, memory.size, AGE_SLICES + 1).astype(int)
    by_age = [(f"stored at env steps {first + a:,}–{first + b:,}", (age >= a) & (age < b)) for a, b in zip(bounds, bounds[1:])]
    print()
    table("when stored", by_age, sq, q, y)


if __name__ == "__main__":
  main()
