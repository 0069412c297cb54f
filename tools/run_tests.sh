#!/usr/bin/env bash
# Set everything up (./.venv) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python -m pytest tests -q --timeout 600 "$@"
