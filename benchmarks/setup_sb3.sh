#!/usr/bin/env bash
# Stable-Baselines3 for the peer benchmarks, in its own venv so tinydqn never depends on PyTorch.
# torch 2.13.0 first: a CPU wheel; an unpinned torch would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .sb3-venv/bin/python ] || python3 -m venv .sb3-venv
.sb3-venv/bin/pip install -q torch==2.13.0
.sb3-venv/bin/pip install -q stable-baselines3 "gymnasium>=1.0"
# LunarLander (presets_table.py) needs Box2D; Pong (atari_speed.py) the ALE and OpenCV for SB3's Atari wrappers
.sb3-venv/bin/pip install -q Box2D ale-py opencv-python-headless
.sb3-venv/bin/python -c "import stable_baselines3, torch; print('SB3', stable_baselines3.__version__, 'torch', torch.__version__)"
