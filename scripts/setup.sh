#!/usr/bin/env bash
# Create .venv (if missing) and install weightlab with its test dependencies into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# the editable install follows the sources; it is redone only when pyproject.toml changes (or is missing)
STAMP=.venv/.weightlab-installed
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -x .venv/bin/weightlab ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$WANT" > "$STAMP"
