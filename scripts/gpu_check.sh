#!/usr/bin/env bash
# weightlab on one GPU, in one command (issue 34): the test suite with CUDA visible, every CLI command on the
# GPU at tiny size, and the GPU speed figures against their targets -> benchmarks/results/gpu_check.json.
#   bash scripts/gpu_check.sh [--only NAME,...]   on a GPU machine (its image has torch, timm, transformers, peft)
#   bash scripts/gpu_check.sh --dry-run           the same flow on the CPU at toy sizes (CI runs it)
# Runs from the source tree (PYTHONPATH=src) with .venv's python when there is one, else $PYTHON or python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
exec "$PY" benchmarks/gpu_check.py "$@"
