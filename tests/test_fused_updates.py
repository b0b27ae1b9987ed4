"""Several gradient steps in one jitted call must be the same steps, number for number, as one call each."""
import numpy as np
import pytest

from conftest import filled_buffer, make_agent, params_numpy


def burst(agent, steps: int, seed: int = 0):
  rng, buf = np.random.default_rng(seed), filled_buffer()
  stats = [agent.updates(steps, lambda batch: buf.sample_into(batch, rng), rng).numpy() for _ in range(3)]
  return stats, params_numpy(agent.online), rng.random()


@pytest.mark.parametrize("variant", [{}, {"noisy": True}, {"double_q": True, "n_step": 3}])
def test_fused_steps_equal_one_step_per_call(small_config, variant):
  one_per_call = make_agent(small_config.replace(gradient_steps=8, fused_updates=1, **variant))
  fused = make_agent(small_config.replace(gradient_steps=8, fused_updates=4, **variant))
  assert (one_per_call.fuse, fused.fuse) == (1, 4)
  (stats_a, weights_a, draw_a), (stats_b, weights_b, draw_b) = burst(one_per_call, 8), burst(fused, 8)
  for a, b in zip(stats_a + weights_a, stats_b + weights_b): np.testing.assert_array_equal(a, b)
  assert draw_a == draw_b  # the same random numbers were drawn, in the same order


def test_a_burst_that_is_not_a_whole_number_of_calls_finishes_one_step_at_a_time(small_config):
  config = small_config.replace(gradient_steps=6, fused_updates=4)
  agent = make_agent(config)
  assert agent.fuse == 3  # the largest divisor of 6 up to 4: bursts of 6 are two calls
  (stats_a, weights_a, _), (stats_b, weights_b, _) = burst(agent, 7), burst(make_agent(config.replace(fused_updates=1)), 7)
  for a, b in zip(stats_a + weights_a, stats_b + weights_b): np.testing.assert_array_equal(a, b)


def test_prioritized_replay_takes_one_step_per_call(small_config):
  assert make_agent(small_config.replace(gradient_steps=8, prioritized=True)).fuse == 1
