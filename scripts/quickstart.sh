#!/usr/bin/env bash
# Set everything up, then run the quickstart. Extra arguments go to `weightlab quickstart`
# (e.g. --data-root ../shared/data to run on the shared pretrained model and CIFAR-10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/weightlab quickstart "$@"
