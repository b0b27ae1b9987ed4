#!/usr/bin/env bash
# Set up on first use, then run the test suite. Arguments go to pytest, e.g. `bash test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
