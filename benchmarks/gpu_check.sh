#!/usr/bin/env bash
# The GPU check, one command, well inside 10 minutes on one GPU (issue 17). Run it whenever a GPU is lent and
# commit what it writes:
#
#     benchmarks/gpu_check.sh [DATA] [OUT]
#
# DATA: a folder with faces/dfdc/ (real/, fake/, labels.csv) and text/l2r_rewrites/data.jsonl, i.e. a copy of
#       ../shared/data's (default ../shared/data); OUT: default benchmarks/results/<gpu>-<date>/.
# It runs, each as its own process, writing one JSON line per step to OUT/gpu_check.jsonl:
#   1. visual loop vs a plain loop on pre-decoded tensors, bf16, batch 256: EfficientNet-Lite0 and EfficientNet-B0
#      (target: ratio >= 0.9; plain-loop anchors on an H100: Lite0 5,400 img/s, B0 4,500 img/s);
#   2. text loop, length-bucketed vs fixed padding (target >= 3x);
#   3. `dfmm train visual` at the full budget (8 epochs, recipe improved) on DATA's faces, from the decoded-image
#      cache (`visual.cache: decoded`, built once in the step);
#   4. `dfmm train text` at the full budget (5 epochs, recipe improved) (targets on validation: balanced accuracy
#      >= 0.92, ROC AUC >= 0.98; last measured 0.878 / 0.974).
# SMALL=1 shrinks every step to seconds (a CPU smoke run; its numbers measure nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
PY=${PYTHON:-python}
GPU=$($PY -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "-").lower() if torch.cuda.is_available() else "cpu")')
OUT=${2:-benchmarks/results/${GPU}-$(date +%Y-%m-%d)}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.jsonl"
: > "$LOG"
RUNS=$(mktemp -d)
trap 'rm -rf "$RUNS"' EXIT

if [ "${SMALL:-0}" = 1 ]; then
  VB=16; VS=2; VW=0; TN=32; TB=8; EPV=1; EPT=1; SIZE=(--size 64); TLEN=(--max-length 64)
  LIMITS=(-p data.max_images=64 -p data.max_texts=48 -p data.max_eval_images=32 -p data.max_eval_texts=32
          -p visual.image_size=64 -p text.max_length=64)
else
  VB=256; VS=30; VW=$(( $(nproc) > 12 ? 12 : $(nproc) )); TN=4096; TB=16; EPV=8; EPT=5; SIZE=(); TLEN=()
  LIMITS=()
fi

step() {  # step NAME COMMAND...: run it; its stdout (one JSON object) becomes one line with the name and seconds
  local name=$1; shift
  local t0=$SECONDS
  echo "gpu_check: $name" >&2
  "$@" > "$RUNS/$name.json"
  $PY - "$name" "$((SECONDS - t0))" "$GPU" "$RUNS/$name.json" >> "$LOG" <<'PY'
import json, sys
name, seconds, gpu, path = sys.argv[1:]
result = json.load(open(path))
print(json.dumps({"step": name, "seconds": int(seconds), "gpu": gpu, **result}))
PY
}

step visual_loop_lite0 $PY benchmarks/visual_throughput.py --images "$DATA/faces/dfdc" --batch $VB --steps $VS --workers $VW \
  "${SIZE[@]}"
step visual_loop_b0 $PY benchmarks/visual_throughput.py --images "$DATA/faces/dfdc" --batch $VB --steps $VS --workers $VW \
  --arch efficientnet_b0 "${SIZE[@]}"
step text_loop $PY benchmarks/text_throughput.py --texts "$DATA/text/l2r_rewrites/data.jsonl" --n $TN --batch $TB \
  "${TLEN[@]}"
COMMON=(params/full.yaml params/sources/local.yaml -p "data.images=$DATA/faces/dfdc"
        -p "data.texts=$DATA/text/l2r_rewrites/data.jsonl" -p data.videos= -p "study.runs_dir=$RUNS"
        -p study.name=gpu_check -p "study.num_workers=$VW" "${LIMITS[@]}")
step train_visual_full $PY -m dfmm.cli train visual "${COMMON[@]}" -p "visual.epochs=$EPV" -p visual.cache=decoded \
  --recipe improved
step train_text_full $PY -m dfmm.cli train text "${COMMON[@]}" -p "text.epochs=$EPT" --recipe improved
echo "gpu_check: wrote $LOG" >&2
