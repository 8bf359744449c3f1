#!/usr/bin/env bash
# The GPU table of csae-tf (precision x XLA x batch x replicas) and the time to 99% MNIST test accuracy,
# in under 5 minutes on a GPU. Without a GPU it runs the same table at tiny sizes on the CPU and says so.
#   bash benchmarks/gpu.sh [--data-dir DIR] [--manual-dir DIR] [--output FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PYTHON" benchmarks/gpu.py "$@"
