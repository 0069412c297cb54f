#!/usr/bin/env bash
# One ALPI pseudo-labelling step (ALPI's original script names): --gpu G --step K --ratio R
#   scripts/step_script.sh --gpu 0 --step 0 --ratio 30 [--data_path data/kitti --out output/alpi ...]
set -euo pipefail
GPU=0; STEP=0; RATIO=30; EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpu) GPU="$2"; shift 2;; --step) STEP="$2"; shift 2;; --ratio) RATIO="$2"; shift 2;;
    *) EXTRA+=("$1"); shift;;
  esac
done
cd "$(dirname "$0")/.."
CUDA_VISIBLE_DEVICES="$GPU" exec python tools/alpi_label.py --data_path "${DATA_PATH:-data/kitti}" \
  --out "${OUT:-output/alpi}" --ratio "$RATIO" --step "$STEP" --steps "${STEPS:-2}" "${EXTRA[@]}"
