"""Where a run's TD error lives: every transition in a snapshot's replay memory, binned by how many steps
before a true terminal it was taken, with the squared TD error y − Q(φ, a) under the snapshot's own online
and target nets (the training target: n-step returns, Double DQN as configured).

    .venv/bin/python benchmarks/td_errors_near_ends.py RUN_DIR [RUN_DIR ...] [--step 30000]

For single-env MLP runs without C51 (CartPole, Acrobot); the snapshot must hold its replay memory.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from tinydqn.agent import DQNAgent
from tinydqn.buffers import ReplayBuffer
from tinydqn.config import make_config
from tinydqn.networks import NumpyQ
from tinydqn.snapshot import load_latest_snapshot, load_snapshot, snapshot_dirs

BINS = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 10), (11, 50), (51, None)]  # steps before the terminal; None: no end in sight


def steps_to_terminal(terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
  """For each stored transition of one env, how many transitions later its episode terminates (0: this one);
  -1 when it ends by truncation or has not ended yet."""
  out, ahead = np.empty(len(terminated), np.int64), -1
  for i in range(len(terminated) - 1, -1, -1):
    ahead = 0 if terminated[i] else -1 if truncated[i] or ahead < 0 else ahead + 1
    out[i] = ahead
  return out


def td_errors_by_distance(run_dir: Path, step: int | None) -> tuple[str, list[tuple[int, float, float, float, float]]]:
  ckpt = run_dir / "checkpoints"
  if step is not None:
    path = next((p for p in snapshot_dirs(ckpt) if int(p.name[5:]) == step), None)
    if path is None: raise SystemExit(f"{ckpt} has no snapshot of step {step}")
    snap = load_snapshot(path)
  else: snap = load_latest_snapshot(ckpt)
  config = make_config(**json.loads((run_dir / "config.json").read_text()))
  if config.num_envs != 1 or config.distributional or snap.replay is None:
    raise SystemExit(f"{run_dir}: needs one env, no C51 and a snapshot with its replay memory")
  obs_shape = snap.replay["obs"].shape[1:]
  memory = ReplayBuffer(config.buffer_size, obs_shape, snap.replay["obs"].dtype, 1, config.n_step, config.gamma)
  memory.load_state_dict(snap.replay)
  agent = DQNAgent(config, obs_shape, memory.obs.dtype, int(gym.make(config.env_id).action_space.n))
  agent.load_state_dict(snap.agent)
  idx = np.arange(memory.size)
  returns, discounts, last = memory.n_step_returns(idx)
  q = agent.q_values(memory.obs[idx])[idx, memory.actions[idx]]
  next_obs = memory.next_obs[last]
  next_target = NumpyQ(agent.target)(next_obs)
  chooser = agent.q_values(next_obs) if config.double_q else next_target
  y = returns + discounts * next_target[idx, chooser.argmax(axis=1)]
  sq = (y - q) ** 2
  distance = steps_to_terminal(memory.terminated[:memory.size], memory.truncated[:memory.size])
  rows = []
  for lo, hi in BINS:
    m = distance >= lo if hi is None else (distance >= lo) & (distance <= hi)
    if hi is None: m |= distance < 0
    rows.append((int(m.sum()), float(sq[m].mean()), float(sq[m].sum() / sq.sum()), float(q[m].mean()), float(y[m].mean())))
  return f"{run_dir} (step {snap.step}, n_step {config.n_step}, mean squared TD error {sq.mean():.2f})", rows


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("run_dirs", nargs="+", type=Path)
  ap.add_argument("--step", type=int, default=None, help="the snapshot of this step [default: the newest]")
  args = ap.parse_args()
  for run_dir in args.run_dirs:
    title, rows = td_errors_by_distance(run_dir, args.step)
    print(f"\n{title}\n")
    print("| steps before a terminal | transitions | mean (y − Q)² | share of all | mean Q | mean y |")
    print("|---|---:|---:|---:|---:|---:|")
    for (lo, hi), (n, mse, share, q, y) in zip(BINS, rows):
      label = f"{lo}" if lo == hi else f"{lo}–{hi}" if hi is not None else f"≥ {lo}, or none"
      print(f"| {label} | {n} | {mse:.2f} | {share:.2f} | {q:.1f} | {y:.1f} |")


if __name__ == "__main__":
  main()
