import os

# The suite runs on the CPU unless DEV names another device (CI runs it again with DEV=CL): set before tinygrad is
# imported, so tensors a test makes without a device land where the agent's do, whatever runtimes are installed.
os.environ.setdefault("DEV", "CPU")

import numpy as np
import pytest
from tinygrad import Tensor

from tinydqn.agent import DQNAgent
from tinydqn.buffers import ReplayBuffer
from tinydqn.config import Config
from tinydqn.devices import resolve_device


def pytest_collection_modifyitems(config, items) -> None:
  """Tests marked cpu_only (host views, CPU levers) are skipped when DEV names another device."""
  device = resolve_device()
  if device == "CPU": return
  skip = pytest.mark.skip(reason=f"CPU only (host views or CPU levers); this run is on {device}")
  for item in items:
    if item.get_closest_marker("cpu_only"): item.add_marker(skip)


@pytest.fixture
def small_config() -> Config:
  return Config(env_id="CartPole-v1", net_arch=(16, 16), batch_size=8, buffer_size=64, learning_starts=10,
                total_timesteps=1000, learning_rate=1e-2, eval_freq=0)


def make_agent(config: Config, seed: int = 0, **kw) -> DQNAgent:
  Tensor.manual_seed(seed)
  return DQNAgent(config, (4,), np.dtype(np.float32), 2, **kw)


def filled_buffer(n: int = 64, seed: int = 0, **kw) -> ReplayBuffer:
  rng = np.random.default_rng(seed)
  buf = ReplayBuffer(n, (4,), np.float32, **kw)
  columns = (rng.normal(size=(n, 4)), rng.integers(2, size=n), rng.normal(size=n), rng.normal(size=(n, 4)),
             rng.random(n) < 0.2, rng.random(n) < 0.1)
  for i in range(n): buf.add(*(c[i:i + 1] for c in columns))
  return buf


def params_numpy(net) -> list[np.ndarray]:
  return [p.numpy().copy() for p in net.parameters()]


def lag_target(agent: DQNAgent, config: Config, seed: int = 7) -> None:
  """Loads another network's weights into `agent`'s target net, so that the target and the online net disagree (a
  test that syncs them before each step cannot tell which of the two a TD target used)."""
  other = make_agent(config, seed=seed)
  state = {k: v.copy() for k, v in agent.state_arrays().items()}
  state.update({"target." + k.removeprefix("online."): v.copy() for k, v in other.state_arrays().items()
                if k.startswith("online.")})
  agent.load_state_dict(state)


def choosers_differ(agent: DQNAgent, next_obs: np.ndarray) -> bool:
  """Whether the online and the target net pick a different a′ for some of these observations."""
  return bool((agent.q_values(next_obs).argmax(1) != agent.head.q_values(agent.target(Tensor(next_obs.copy()))).numpy().argmax(1)).any())
