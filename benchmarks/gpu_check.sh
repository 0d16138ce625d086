#!/usr/bin/env bash
# The GPU check, in one bounded run: ResNet-50 and ViT-B/16 (random weights, 224 px, with their heat maps) on ONNX
# Runtime's CUDA and TensorRT execution providers at fp16 and on eager PyTorch fp16, at batch 1, 8 and 32
# (benchmarks/bench_gpu.py says what is timed and how). Made for a lent GPU machine with no internet, where
# the tree is not installed: the package is imported from src/.
#
# Usage, from anywhere:
#   OUT=/some/dir benchmarks/gpu_check.sh                  # results in $OUT (default ./gpu_out)
#   benchmarks/gpu_check.sh --device cpu --quick           # the CPU smoke run; any bench_gpu.py flag passes through
# Environment: PYTHON (default python3), GPU_CHECK_LIMIT_S (default 280: the whole run stays under 5 minutes).
# Writes $OUT/gpu.json (the report, rewritten after every row) and $OUT/gpu.txt (what was printed).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-./gpu_out}"
PYTHON="${PYTHON:-python3}"
LIMIT_S="${GPU_CHECK_LIMIT_S:-280}"
# bench_gpu.py starts no new row after this, so that the last one ends before the hard limit below
BUDGET_S=$((LIMIT_S > 120 ? LIMIT_S - 60 : LIMIT_S / 2))
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

echo "== gpu_check: results in $OUT_DIR, at most ${LIMIT_S} s (new rows until ${BUDGET_S} s)"
echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
    timeout 30 nvidia-smi || echo "nvidia-smi failed (exit $?)"
else
    echo "nvidia-smi: not found (no NVIDIA driver here)"
fi
echo "== $PYTHON: $("$PYTHON" --version 2>&1) at $(command -v "$PYTHON")"
echo "== $PYTHON benchmarks/bench_gpu.py --out $OUT_DIR/gpu.json --budget-s $BUDGET_S $*"
rc=0
timeout --kill-after=10 "$LIMIT_S" "$PYTHON" benchmarks/bench_gpu.py \
    --out "$OUT_DIR/gpu.json" --budget-s "$BUDGET_S" "$@" 2>&1 | tee "$OUT_DIR/gpu.txt" || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "== bench_gpu.py ran past ${LIMIT_S} s and was stopped: $OUT_DIR/gpu.json holds the rows it finished"
elif [ "$rc" -ne 0 ]; then
    echo "== bench_gpu.py failed (exit $rc); see $OUT_DIR/gpu.txt"
else
    echo "== done: $OUT_DIR/gpu.json, $OUT_DIR/gpu.txt"
fi
exit "$rc"
