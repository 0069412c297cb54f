#!/usr/bin/env bash
# Every ALPI step, the refinement and the export: --gpu G --ratio R [--steps N] (--step ignored)
set -euo pipefail
GPU=0; RATIO=30; STEPS=2; EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpu) GPU="$2"; shift 2;; --ratio) RATIO="$2"; shift 2;; --steps) STEPS="$2"; shift 2;;
    --step) shift 2;; *) EXTRA+=("$1"); shift;;
  esac
done
cd "$(dirname "$0")/.."
CUDA_VISIBLE_DEVICES="$GPU" exec python tools/alpi_label.py --data_path "${DATA_PATH:-data/kitti}" \
  --out "${OUT:-output/alpi}" --ratio "$RATIO" --steps "$STEPS" "${EXTRA[@]}"
