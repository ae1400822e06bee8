#!/usr/bin/env bash
# Issue 12's GPU check as one prepared run (about 9 minutes of a 15-minute device window; one device
# command may run 10 minutes at most):
#   1. pytest -m gpu tests/gpu: every recipe on CUDA in bf16, GPU vs CPU on one step   <= TESTS_BUDGET_S (150 s)
#   2. benchmarks/gpu/bench_gpu.py: SFT / DPO / PPO beside TRL, 0.5B / 1B / 8B-LoRA      <= BENCH_BUDGET_S (360 s)
# Usage: benchmarks/gpu/run_all.sh [all|tests|bench] [OUT_DIR]      (OUT_DIR default: $OUT, else runs/gpu)
#        BENCH_ARGS="--smoke" benchmarks/gpu/run_all.sh      # the same run on a CPU: tests skip, tiny bench
# Writes to OUT_DIR (7 files, flat): nvidia-smi.txt, pytest_gpu.txt, bench_log.txt, results.jsonl,
# table.md, settings.json, RESULTS_gpu.md (the table, the pytest summary and the commands).
#
# On the device machine python3 holds CUDA torch, transformers, accelerate and peft, but neither TRL nor
# datasets: carry them as Python 3.12 wheels in .whl/ (trl, datasets, dill, multiprocess); this script
# installs them into /tmp/site and runs alignlab from src/ (no install needed):
#   run(command="bash benchmarks/gpu/run_all.sh", carry=[".whl"], timeout_s=600)
set -u
cd "$(dirname "$0")/../.."
WHAT=${1:-all}
OUT_DIR=${2:-${OUT:-runs/gpu}}
TESTS_BUDGET_S=${TESTS_BUDGET_S:-150}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-360}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
  >"$OUT_DIR/nvidia-smi.txt" 2>&1
started=$(date -u +%Y-%m-%dT%H:%MZ)

tests_rc=skipped
if [ "$WHAT" = all ] || [ "$WHAT" = tests ]; then
  timeout -k 10 "$TESTS_BUDGET_S" "$PY" -m pytest -m gpu tests/gpu -v -p no:cacheprovider -ra --durations=10 \
    >"$OUT_DIR/pytest_gpu.txt" 2>&1
  tests_rc=$?
  [ "$tests_rc" = 124 ] && echo "TIMED OUT after $TESTS_BUDGET_S s" >>"$OUT_DIR/pytest_gpu.txt"
  tail -n 3 "$OUT_DIR/pytest_gpu.txt"
fi

bench_rc=skipped
if [ "$WHAT" = all ] || [ "$WHAT" = bench ]; then
  # parts still running at the budget are stopped by their own timeout; none starts after it
  timeout -k 10 $((BENCH_BUDGET_S + 45)) "$PY" benchmarks/gpu/bench_gpu.py --out "$OUT_DIR" \
    --budget "$BENCH_BUDGET_S" --part-timeout 200 ${BENCH_ARGS:-} >"$OUT_DIR/bench_log.txt" 2>&1
  bench_rc=$?
  cat "$OUT_DIR/table.md" 2>/dev/null || tail -n 40 "$OUT_DIR/bench_log.txt"
fi

{
  echo "# GPU results (issue 12)"
  echo
  echo "Measured $started by \`bash benchmarks/gpu/run_all.sh $WHAT\` (python: $PY)."
  echo "Device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo none)"
  echo
  echo "## pytest -m gpu tests/gpu (exit $tests_rc)"
  echo
  echo '```'
  grep -E "passed|failed|error|skipped|TIMED OUT" "$OUT_DIR/pytest_gpu.txt" 2>/dev/null | tail -n 5
  echo '```'
  echo
  echo "## benchmarks/gpu/bench_gpu.py (exit $bench_rc)"
  echo
  cat "$OUT_DIR/table.md" 2>/dev/null || echo "(no table: see bench_log.txt)"
} >"$OUT_DIR/RESULTS_gpu.md"
echo "wrote $OUT_DIR/RESULTS_gpu.md"
