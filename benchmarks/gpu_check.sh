#!/usr/bin/env bash
# The check for a machine with an NVIDIA GPU, run as is from the repository root: `bash benchmarks/gpu_check.sh`.
# At most 8 minutes once the venvs exist (stage limits: 20+20 s device probes, 180 s suite, 60+20 s CartPole, 20 s
# SB3 probe, 150 s Pong) and one table at the end:
#   1. the test suite with DEV=NV (tinygrad's own NVIDIA driver), or DEV=CUDA where NV does not open;
#   2. CartPole train -> eval -> SIGINT -> resume on the GPU, identical to the uninterrupted run (a test in
#      tests/test_devices.py that runs off the CPU only), and a default-preset CartPole run's steps/s on the GPU;
#   3. Pong with learning on (benchmarks/atari_speed.py): env steps/s and the Nature-CNN gradient step (sample +
#      update), tinydqn against SB3/PyTorch on the same GPU.
# Needs tinydqn's .venv (made by scripts/setup.sh when missing, which needs the package index) and, for the PyTorch
# column, a Python with stable-baselines3, ale-py and a CUDA build of torch: SB3_PYTHON, else
# benchmarks/.sb3-venv/bin/python if its torch sees a GPU; without one that column says why it is empty.
set -uo pipefail  # no -e: a failing stage is reported in the table and the next one still runs
cd "$(dirname "$0")/.."
source scripts/setup.sh || exit 1
PY=.venv/bin/python
OUT=$(mktemp -d)
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); }

GPU=""
for candidate in ${GPU_CHECK_DEVICES:-NV CUDA}; do  # GPU_CHECK_DEVICES: try others (a dry run on CL, say)
  if timeout 20 $PY -c "from tinydqn.devices import check_device; check_device('$candidate')" 2>"$OUT/$candidate.err"; then
    GPU=$candidate; break
  fi
done
if [ -z "$GPU" ]; then
  echo "gpu_check: neither NV nor CUDA works here: $(tail -n1 "$OUT/NV.err"); $(tail -n1 "$OUT/CUDA.err")" >&2
  exit 2
fi
echo "gpu_check: using DEV=$GPU" >&2
export DEV=$GPU

# 1 + 2a: the suite as CI's CL stage runs it (cpu_only tests skip themselves), the interrupt/resume test included.
start=$SECONDS
timeout 180 $PY -m pytest -q -rA -m "not slow and not cpu_stage" -p no:cacheprovider >"$OUT/suite.log" 2>&1
code=$?
summary=$(grep -E "^=+ .*(passed|failed|error)" "$OUT/suite.log" | tail -n1 | tr -d '=')
[ $code = 124 ] && summary="stopped at the 180 s limit"
row "test suite, DEV=$GPU (as CI's CL stage: -m 'not slow and not cpu_stage')" "${summary:-exit $code}" "$((SECONDS - start))"
resume=$(grep -oE "^(PASSED|FAILED|SKIPPED|ERROR).*interrupt_resume_on_this_device[^ ]*( - .*)?" "$OUT/suite.log" | head -n1)
row "CartPole train -> eval -> SIGINT -> resume = uninterrupted" "${resume:-did not run}" "-"

# 2b: the CartPole preset on the GPU for 5k steps (its 50k would not fit the budget), then eval.
start=$SECONDS
if timeout 60 $PY -m tinydqn train CartPole-v1 --device "$GPU" --total-timesteps 5000 --eval-freq 0 --quiet \
     --run-dir "$OUT/cartpole" --checkpoint-freq 0 >"$OUT/cartpole.log" 2>&1; then
  sps=$($PY -c "import json; s = json.load(open('$OUT/cartpole/summary.json')); print(f\"{s['steps_per_second']:.0f} env steps/s on {s['device']}, greedy return {s['final_eval']['mean_return']:.1f}\")")
  ev=$(timeout 20 $PY -m tinydqn eval "$OUT/cartpole" --device "$GPU" --episodes 5 --json 2>&1 | tail -n1)
  row "CartPole preset, 5k steps + eval" "$sps; eval: ${ev:0:80}" "$((SECONDS - start))"
else
  row "CartPole preset, 5k steps + eval" "failed: $(tail -n1 "$OUT/cartpole.log")" "$((SECONDS - start))"
fi

# 3: Pong with learning on, against SB3/PyTorch on the same GPU.
SB3=${SB3_PYTHON:-benchmarks/.sb3-venv/bin/python}
sb3_args=()
if [ -x "$SB3" ] && timeout 20 "$SB3" -c "import torch, stable_baselines3, ale_py; assert torch.cuda.is_available()" 2>/dev/null; then
  sb3_args=(--sb3-python "$SB3")
else
  row "SB3/PyTorch column" "empty: no Python with stable-baselines3, ale-py and CUDA torch (set SB3_PYTHON)" "-"
fi
start=$SECONDS
if timeout 150 $PY benchmarks/atari_speed.py --device "$GPU" --learning-starts 500 --steps 1500 --rounds 1 \
     "${sb3_args[@]}" >"$OUT/pong.log" 2>"$OUT/pong.err"; then
  while IFS='|' read -r _ name sps ms _; do
    row "Pong, ${name// /} (env steps/s; ms per Nature-CNN gradient step)" "$sps;$ms" "-"
  done < <(grep -E "^\| (tinydqn|sb3) " "$OUT/pong.log")
  row "Pong benchmark" "see rows above" "$((SECONDS - start))"
else
  row "Pong benchmark" "failed: $(tail -n1 "$OUT/pong.err")" "$((SECONDS - start))"
fi

echo
echo "gpu_check on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || echo 'an unnamed GPU'), DEV=$GPU"
echo
echo "| check | result | s |"
echo "|---|---|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "logs: $OUT"
