#!/usr/bin/env bash
# Issue 26's device check, one run (about 6-8 min on one H200): exactness of the device path on CUDA (fp32, tiny
# Llama GQA / Qwen3 / sliding-window models vs today's path and the eager oracle), the profile (time split, op and
# kernel counts, CUDA syncs; old vs new) and the bench table (plain forward, one pass, calibrated old vs new, half
# depth, batch 1 vs 8, ratios) on random weights of the Qwen3-0.6B, Qwen3-4B and Llama-3.1-8B shapes.
# Usage, in the repo root:  bash bench/gpu_issue26.sh           (CUDA; results and log under $OUT or ./gpu_out)
#                           bash bench/gpu_issue26.sh --smoke   (CPU, tiny shapes: checks the script itself)
# Every step has its own time limit, so one slow step cannot eat the others; the log says which step ran out.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
LOG="$OUT/gpu_issue26.log"
: >"$LOG"
if [ "${1:-}" = "--smoke" ]; then
  DEV=cpu S06=tiny S4=tiny S8=tiny T06="300 600" T4=600 T8="300 600" BT=300 BT8=300 PT=600 REPS=1
else
  DEV=cuda S06=qwen3-0.6b S4=qwen3-4b S8=llama-3.1-8b T06="2000 8000" T4=8000 T8="2700 8000 16000" BT=2000 BT8=8000 PT=8000 REPS=3
fi
step() {  # step NAME LIMIT_S ARGS...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)" | tee -a "$LOG"
  timeout "$limit" "$PY" bench/bench_engine.py --device "$DEV" "$@" --json "$OUT/$name.json" 2>&1 \
    | grep -v -e "Warning" -e "warnings.warn" -e "forward_call" -e "func(self" | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "=== $name: exit $rc (124: ran out of its ${limit}s)" | tee -a "$LOG"
}
[ "$DEV" = cuda ] && { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"; }
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"
step exactness 60 --exactness
step profile_qwen3_0.6b 60 --shape "$S06" --tokens $PT --profile
step table_qwen3_0.6b 90 --shape "$S06" --tokens $T06 --batch-tokens $BT --reps $REPS
step table_qwen3_4b 70 --shape "$S4" --tokens $T4 --batch-tokens 0 --reps $REPS
step table_llama_8b 150 --shape "$S8" --tokens $T8 --batch-tokens $BT8 --reps $REPS
echo "=== done $(date -u +%T)" | tee -a "$LOG"
