#!/usr/bin/env bash
# Set up on first use, then train DQN (CartPole-v1 with its tuned preset unless told otherwise) and show
# the result. Arguments go to `tinydqn train`, e.g. `bash run.sh Acrobot-v1 --seed 3`.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
exec .venv/bin/tinydqn train "$@"
