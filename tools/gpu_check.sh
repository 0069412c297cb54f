#!/usr/bin/env bash
# GPU checks in one go, on a machine with CUDA torch and nvcc (run from the repo root):
#   build the CUDA + C++ ops in place, run the GPU tests, benchmark (tools/bench_gpu.py), then the
#   whole suite. Logs and results go to $OUT (default output/gpu_check).
#
#   bash tools/gpu_check.sh --scan PATH/TO/000000.bin [--site ARCHIVE.tar.xz] [--budget SECONDS]
#
# --site: a .tar.xz of extra site-packages (e.g. spconv, shapely) unpacked to /tmp/site and put on
#   PYTHONPATH, for machines that cannot pip-install. Made where pip works, for the GPU machine's
#   Python (3.12 here): pip download --no-deps --only-binary=:all: --python-version 3.12
#   --platform manylinux_2_28_x86_64 -d whl spconv-cu126==2.3.8 'cumm-cu126<0.8' pccm ccimport fire
#   termcolor lark shapely easydict tensorboardX; unzip each wheel into one folder; tar -cJf it.
#   (xz brings spconv's 285 MB library to 21 MB: the wheels alone are over a 64 MiB transfer.) --budget: seconds the whole script may take;
#   the full suite gets whatever is left (it is the step most worth cutting short).
# Each step's exit status is printed in the summary at the end; a failing step does not stop the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output/gpu_check}
PY=${PYTHON:-python3}
SCAN=""; SITE=""; BUDGET=480
while [ $# -gt 0 ]; do
  case "$1" in
    --scan) SCAN=$2; shift 2 ;;
    --site) SITE=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$SCAN" ] || { echo "gpu_check: --scan must name a KITTI velodyne .bin (got '$SCAN')" >&2; exit 2; }
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"; : > "$SUMMARY"
log() { echo "[gpu_check +${SECONDS}s] $*" | tee -a "$SUMMARY"; }
step() {  # step NAME LOGFILE CMD...: run, record status and time
  local name=$1 logf=$2; shift 2
  local t0=$SECONDS
  "$@" > "$logf" 2>&1
  local rc=$?
  log "$name: exit $rc in $((SECONDS - t0)) s (log $(basename "$logf"))"
  tail -n 25 "$logf"
  return 0
}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

if [ -n "$SITE" ]; then
  # Python's tarfile rather than tar -J: the machine may have no xz binary.
  $PY -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall('/tmp/site')" "$SITE" \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
  log "unpacked $SITE to /tmp/site"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$SUMMARY"
$PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$SUMMARY"

# Synthetic KITTI-format data for the detector rows, made while the ops compile.
$PY tools/create_data.py synthetic --out /tmp/gpu_check_data --frames 48 --seed 1 > "$OUT/data.log" 2>&1 &
DATA_PID=$!

# Hopper only unless told otherwise: one architecture keeps the build short.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-8}
# The two extensions in two processes at once (torch's build command swaps the compiler
# executable per source file, so setuptools' threaded -j is not safe for a .cu next to a .cpp).
PCDET_EXT_ONLY=cpu $PY setup.py build_ext --inplace --build-temp build/tmp_cpu > "$OUT/build_cpu.log" 2>&1 &
CPU_BUILD=$!
PCDET_EXT_ONLY=cuda step build_cuda "$OUT/build.log" $PY setup.py build_ext --inplace --build-temp build/tmp_cuda
wait $CPU_BUILD; log "build_cpu: exit $? (log build_cpu.log)"
$PY -c "from pcdet_ext import ops; print('compiled ops:', ops.compiled_backends())" 2>&1 | tee -a "$SUMMARY"
$PY -c "import spconv, spconv.pytorch; print('spconv', spconv.__version__)" 2>&1 | tail -1 | tee -a "$SUMMARY"

step gpu_tests "$OUT/gpu_tests.log" $PY -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py \
  tests/test_ops_compiled.py tests/test_sparse_api.py tests/test_sparse_conv.py tests/test_ops_build.py

wait $DATA_PID; log "synthetic data: exit $? ($(tail -c 200 "$OUT/data.log" | tr '\n' ' ' | tail -c 120))"
step bench "$OUT/bench.log" $PY tools/bench_gpu.py --scan "$SCAN" --data /tmp/gpu_check_data \
  --json "$OUT/bench_gpu.json" --md "$OUT/benchmarks_gpu.md"

LEFT=$((BUDGET - SECONDS - 15))
if [ "$LEFT" -gt 60 ]; then
  NPROC=$(( $(nproc) / 2 )); [ "$NPROC" -lt 1 ] && NPROC=1
  XDIST=""; $PY -c "import xdist" 2>/dev/null && XDIST="-n $NPROC"
  log "full suite: ${LEFT} s left, pytest $XDIST"
  step full_suite "$OUT/full_suite.log" timeout "$LEFT" $PY -m pytest -q -rs -p no:cacheprovider $XDIST tests
else
  log "full suite skipped: only ${LEFT} s of the budget left"
fi
log "done"
