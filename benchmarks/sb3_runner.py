"""One Stable-Baselines3 DQN run with tinydqn's evaluation protocol; prints one JSON line.

Runs in the separate SB3 virtual environment (see benchmarks/setup_sb3.sh), called by vs_sb3.py:
    .sb3-venv/bin/python benchmarks/sb3_runner.py '{"env_id": "CartPole-v1", "seed": 0, ...}'
Periodic greedy evaluation (deterministic=True) every eval_freq env steps on a separate env, episode i
reset with seed eval_seed + i; its time is measured and excluded from train_time_s, as tinydqn does.
"""
import json
import resource
import sys
import time

PROCESS_START = time.perf_counter()  # set-up = imports, model construction and SB3's own set-up before step 1

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import DQN  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

SB3_FIELDS = ["learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq",
              "gradient_steps", "target_update_interval", "exploration_fraction", "exploration_initial_eps",
              "exploration_final_eps", "max_grad_norm"]


def greedy_returns(model, env, episodes, seed):
  returns = []
  for i in range(episodes):
    obs, _ = env.reset(seed=seed + i)
    total, done = 0.0, False
    while not done:
      action, _ = model.predict(obs, deterministic=True)
      obs, reward, terminated, truncated, _ = env.step(int(action))
      total, done = total + float(reward), terminated or truncated
    returns.append(total)
  return returns


class PeriodicEval(BaseCallback):
  def __init__(self, cfg, env):
    super().__init__()
    self.cfg, self.env, self.rows, self.eval_seconds, self.start = cfg, env, [], 0.0, None

  def _on_training_start(self):
    self.start = time.perf_counter()

  def _on_step(self):
    if self.cfg["eval_freq"] and self.num_timesteps % self.cfg["eval_freq"] == 0:
      t0 = time.perf_counter()
      returns = greedy_returns(self.model, self.env, self.cfg["eval_episodes"], self.cfg["eval_seed"])
      now = time.perf_counter()
      self.eval_seconds += now - t0
      self.rows.append({"step": self.num_timesteps, "mean_return": float(np.mean(returns)),
                        "time_s": now - self.start, "train_time_s": now - self.start - self.eval_seconds})
    return True


def main():
  cfg = json.loads(sys.argv[1])
  model = DQN("MlpPolicy", gym.make(cfg["env_id"]), seed=cfg["seed"], device="cpu", verbose=0,
              policy_kwargs={"net_arch": list(cfg["net_arch"])}, **{k: cfg[k] for k in SB3_FIELDS})
  callback = PeriodicEval(cfg, gym.make(cfg["env_id"]))
  start = time.perf_counter()
  model.learn(total_timesteps=cfg["total_timesteps"], callback=callback)
  seconds = time.perf_counter() - start
  final = greedy_returns(model, gym.make(cfg["env_id"]), cfg["final_episodes"], cfg["eval_seed"])
  setup_seconds = callback.start - PROCESS_START
  print(json.dumps({"library": "sb3", "seed": cfg["seed"], "seconds": seconds, "setup_seconds": setup_seconds,
                    "train_seconds": seconds - callback.eval_seconds, "evals": callback.rows,
                    "final_return": float(np.mean(final)), "torch_threads": torch.get_num_threads(),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
  main()
