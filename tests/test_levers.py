"""tinygrad's opt-in CPU levers must not change results: HCQ2=1 trains bit-identically to the stock path."""
import os
import subprocess
import sys

import pytest

RUN = """
import hashlib
from tinydqn.config import Config
from tinydqn.train import train
config = Config(env_id="CartPole-v1", seed=2, total_timesteps=1500, learning_starts=200, train_freq=4, batch_size=32,
                net_arch=(32, 32), target_update_interval=100, eval_freq=500, eval_episodes=2, checkpoint_freq=0)
result = train(config, sys.argv[1], progress=False)
weights = (result.run_dir / "checkpoints" / "final.safetensors").read_bytes()
print(hashlib.sha256(weights).hexdigest(), result.final_eval.mean_return)
"""


@pytest.mark.parametrize("lever", ["HCQ2"])
def test_lever_gives_bit_identical_training(tmp_path, lever):
  outputs = []
  for value in ("0", "1"):
    env = {**os.environ, lever: value}
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + RUN, str(tmp_path / f"{lever}{value}")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    outputs.append(proc.stdout.strip().splitlines()[-1])
  assert outputs[0] == outputs[1]
