"""Env steps per second on Pong with learning on, tinydqn vs Stable-Baselines3, alternating in one run, and
where tinydqn's time goes (acting, env, storing, sampling + gradient step).

Both: PongNoFrameskip-v4, Nature preprocessing, 4-frame stacks, Nature CNN, Adam, batch 32, a gradient step
every 4 env steps, target copy every 1000, learning_starts steps of random play first (not timed).
SB3 uses its own Atari wrappers (make_atari_env + VecFrameStack) and CnnPolicy; tinydqn its `atari` preset.
Both run on the CPU unless `--device` names a GPU (tinygrad's name, e.g. NV or CUDA; PyTorch then uses "cuda").

    .venv/bin/python benchmarks/atari_speed.py --sb3-python benchmarks/.sb3-venv/bin/python --steps 2000 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ENV_ID = "PongNoFrameskip-v4"


def tinydqn_child(learning_starts: int, steps: int) -> dict:
  import numpy as np
  from tinygrad import Tensor

  from tinydqn.agent import DQNAgent
  from tinydqn.config import make_config
  from tinydqn.envs import describe, last_observations, make_env, make_vector_env
  from tinydqn.frame_buffer import FrameReplayBuffer
  config = make_config(ENV_ID, buffer_size=10_000, learning_starts=learning_starts)
  envs, probe = make_vector_env(ENV_ID, 1), make_env(ENV_ID)
  shape, dtype, n_actions = describe(probe)
  Tensor.manual_seed(0)
  agent, rng = DQNAgent(config, shape, dtype, n_actions), np.random.default_rng(0)
  memory = FrameReplayBuffer(config.buffer_size, shape, dtype)
  obs = envs.reset(seed=0)[0].copy()  # the vector env reuses its observation array (copy=False)
  phases = {"act": 0.0, "env": 0.0, "store": 0.0, "learn": 0.0}
  updates: list[float] = []
  for step in range(1, learning_starts + steps + 1):
    timed = step > learning_starts
    if step == learning_starts + 1: start = time.perf_counter()
    t0 = time.perf_counter()
    actions = agent.act(obs, 1.0 if not timed else 0.05, rng)  # ε small when timed: the network acts
    t1 = time.perf_counter()
    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
    t2 = time.perf_counter()
    memory.add(obs, actions, np.clip(rewards, -1, 1), last_observations(next_obs, infos, terminated | truncated),
               terminated, truncated)
    obs = next_obs.copy()
    t3 = time.perf_counter()
    if step > learning_starts and step % config.train_freq == 0:
      memory.sample_into(agent.batch, rng)
      agent.update()
      updates.append(time.perf_counter() - t3)
    if step % config.target_update_interval == 0: agent.sync_target()
    t4 = time.perf_counter()
    if timed:
      for k, a, b in (("act", t0, t1), ("env", t1, t2), ("store", t2, t3), ("learn", t3, t4)): phases[k] += b - a
  seconds = time.perf_counter() - start
  return {"sps": steps / seconds, "ms_per_update": statistics.median(updates[5:]) * 1e3,
          **{f"{k}_s": v for k, v in phases.items()}, "seconds": seconds}


SB3_CHILD = """
import json, sys, time
import ale_py, gymnasium
gymnasium.register_envs(ale_py)
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack
import torch
learning_starts, steps, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[4]
env = VecFrameStack(make_atari_env(sys.argv[3], n_envs=1, seed=0), n_stack=4)
class Clock(BaseCallback):
  def _on_step(self):
    if self.num_timesteps == learning_starts: self.start = time.perf_counter()
    return True
clock = Clock()
model = DQN("CnnPolicy", env, buffer_size=10_000, learning_starts=learning_starts, batch_size=32, learning_rate=1e-4,
            train_freq=4, gradient_steps=1, target_update_interval=1000, exploration_fraction=0.1,
            exploration_final_eps=0.01, optimize_memory_usage=False, seed=0, device=device)
updates, train = [], model.train
def timed_train(*args, **kwargs):  # SB3's gradient step: sample + update (it reads the loss back, which waits)
  t = time.perf_counter()
  train(*args, **kwargs)
  updates.append(time.perf_counter() - t)
model.train = timed_train
model.learn(learning_starts + steps, callback=clock)
seconds = time.perf_counter() - clock.start
updates = sorted(updates[5:]) or [float("nan")]
print(json.dumps({"sps": steps / seconds, "seconds": seconds, "torch_threads": torch.get_num_threads(),
                  "ms_per_update": updates[len(updates) // 2] * 1e3}))
"""


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--sb3-python", help="python of a venv with stable-baselines3, torch and ale-py (none: tinydqn only)")
  ap.add_argument("--learning-starts", type=int, default=1000)
  ap.add_argument("--steps", type=int, default=2000, help="timed env steps after learning_starts")
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--device", default="CPU", help="tinygrad device for tinydqn; any other than CPU runs SB3 on cuda")
  ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.child:
    print(json.dumps(tinydqn_child(args.learning_starts, args.steps)))
    return
  runs: dict[str, list[dict]] = {"tinydqn": [], "sb3": []}
  for _ in range(args.rounds):  # alternate: the machine's speed drifts
    cmds = {"tinydqn": [sys.executable, __file__, "--child"]}  # the device reaches tinydqn through DEV
    if args.sb3_python: cmds["sb3"] = [args.sb3_python, "-c", SB3_CHILD]
    for name, cmd in cmds.items():
      extra = ["--learning-starts", str(args.learning_starts), "--steps", str(args.steps)] if name == "tinydqn" else \
          [str(args.learning_starts), str(args.steps), ENV_ID, "cpu" if args.device.upper() == "CPU" else "cuda"]
      out = subprocess.run(cmd + extra, capture_output=True, text=True, check=True,
                           env={**os.environ, "DEV": args.device}).stdout
      runs[name].append(json.loads(out.strip().splitlines()[-1]))
      print(name, runs[name][-1], file=sys.stderr, flush=True)
  tiny = runs["tinydqn"]
  print(f"\n{ENV_ID} on {args.device}, {args.steps} timed env steps after {args.learning_starts} random ones, "
        f"{args.rounds} rounds\n")
  print("| | env steps/s (median) | ms per gradient step (median) | runs |\n|---|---:|---:|---|")
  for name, rows in runs.items():
    if rows: print(f"| {name} | {statistics.median(r['sps'] for r in rows):.1f} | "
                   f"{statistics.median(r['ms_per_update'] for r in rows):.1f} | "
                   f"{', '.join(format(r['sps'], '.1f') for r in rows)} |")
  if runs["sb3"]:
    print(f"\ntinydqn / SB3: {statistics.median(r['sps'] for r in tiny) / statistics.median(r['sps'] for r in runs['sb3']):.2f}")
  total = statistics.median(r["seconds"] for r in tiny)
  print(f"\ntinydqn: {statistics.median(r['ms_per_update'] for r in tiny):.0f} ms per gradient step (sample + update, "
        "median)\n\n| phase | share of the timed loop |\n|---|---:|")
  for k in ("act", "env", "store", "learn"):
    print(f"| {k} | {100 * statistics.median(r[k + '_s'] for r in tiny) / total:.0f}% |")


if __name__ == "__main__":
  main()
