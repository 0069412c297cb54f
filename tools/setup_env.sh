#!/usr/bin/env bash
# Create ./.venv and install pcdet_ext with everything it needs. Idempotent.
#   CPU (default): pins the CPU torch wheel, torch==2.13.0.
#   GPU: PCDET_EXT_CUDA=1 bash tools/setup_env.sh  -> keeps/installs a CUDA torch and spconv;
#        the CUDA kernels are compiled when torch was built with CUDA and nvcc is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
VPIP=".venv/bin/python -m pip"
$VPIP install -q --upgrade pip setuptools wheel
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ "${PCDET_EXT_CUDA:-0}" = "1" ]; then
    echo "[setup] installing CUDA torch (set TORCH_SPEC to pin a build)"
    $VPIP install -q "${TORCH_SPEC:-torch}"
  else
    echo "[setup] installing CPU torch==2.13.0"
    $VPIP install -q torch==2.13.0
  fi
fi
EXTRAS="dev"
if [ "${PCDET_EXT_CUDA:-0}" = "1" ]; then EXTRAS="dev,cuda"; fi
# Reinstall only when setup.py or a kernel source is newer than the last install (compiling the
# C++ ops takes about a minute on 2 cores).
STAMP=.venv/.pcdet_ext_installed
if [ ! -f "$STAMP" ] || [ -n "$(find setup.py pcdet_ext/ops/csrc pcdet_ext/ops/build_ext.py -newer "$STAMP" 2>/dev/null | head -1)" ]; then
  # --no-build-isolation: setup.py needs the installed torch to compile the ops against it.
  echo "[setup] installing pcdet_ext[$EXTRAS] (compiles the C++ ops when a compiler is present)"
  LOG=.venv/pcdet_ext_install.log
  if ! $VPIP install -v --no-build-isolation -e ".[$EXTRAS]" > "$LOG" 2>&1; then
    tail -30 "$LOG"; echo "[setup] pip install failed, full log: $LOG"; exit 1
  fi
  grep -o "\[pcdet_ext\].*" "$LOG" | sort -u || true
  touch "$STAMP"
fi
.venv/bin/python -c "import pcdet_ext, torch; print('[setup] pcdet_ext', pcdet_ext.__version__, 'torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
