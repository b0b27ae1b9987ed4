# Sourced by run.sh and test.sh: makes sure clang (tinygrad's CPU compiler) and the .venv exist.
# Safe to run again: each step is skipped when already done.
if ! command -v clang >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing clang (tinygrad's CPU backend compiles kernels with it)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null
  else
    echo "setup: tinygrad's CPU backend needs clang; install it (e.g. 'sudo apt-get install clang')" >&2
    exit 1
  fi
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
# Reinstall when pyproject.toml changed since the last install.
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing tinydqn, its test dependencies and the extras the tests exercise into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test,tensorboard,plot,video,ray,atari,minatar]"
  touch .venv/.installed
fi
