#!/usr/bin/env bash
# Set everything up (./.venv) and run the main job on the embedded synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export OPENBLAS_NUM_THREADS=1
exec .venv/bin/python tools/quickstart.py "$@"
