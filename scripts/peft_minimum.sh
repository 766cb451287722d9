#!/usr/bin/env bash
# The lowest PEFT that pyproject.toml allows (peft>=X) passes the PEFT tests: installed beside the
# environment's own (pip --target: nothing else changes) and put first on the path. PEFT 0.17-0.18 do not
# import with this environment's transformers or lack BaseTuner hooks RecastModel uses; 0.18-0.20 save the
# shared templates into every adapter file (measured in issue 35). scripts/test.sh runs this after the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=$(sed -n 's/^ *"peft>=\([0-9.]*\)".*/\1/p' pyproject.toml)
[ -n "$MIN" ] || { echo "peft_minimum: no peft>=X in pyproject.toml" >&2; exit 1; }
DEST=.venv/peft-$MIN
[ -f "$DEST/peft/__init__.py" ] || .venv/bin/python -m pip install -q --no-deps --target "$DEST" "peft==$MIN"
PYTHONPATH="$DEST:src" .venv/bin/python -c "import peft; assert peft.__version__ == '$MIN', peft.__version__; print('PEFT', peft.__version__)"
PYTHONPATH="$DEST:src" .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_peft_recast.py
