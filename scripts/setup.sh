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
# PyPI's torch carries ~3.2 GB of CUDA libraries; on a CPU-only machine with a network, point
# WEIGHTLAB_TORCH_INDEX at PyTorch's CPU wheels (https://download.pytorch.org/whl/cpu) to install those first
if [ -n "${WEIGHTLAB_TORCH_INDEX:-}" ]; then
  .venv/bin/python -m pip install --quiet torch torchvision --index-url "$WEIGHTLAB_TORCH_INDEX"
fi
.venv/bin/python -m pip install --quiet -e ".[dev]"
# the cl extra (avalanche-lib, the EWC / LwF / GDumb / ER-ACE baselines) without what its GEM strategy needs and
# weightlab does not use: avalanche-lib asks for qpsolvers[open_source_solvers], i.e. jax, jaxlib and a dozen QP
# solvers (~400 MB); here it gets plain qpsolvers and the rest of its requirements as declared
.venv/bin/python - <<'PY'
import ast, re, subprocess, sys
cl = ast.literal_eval(re.search(r"^cl = (\[.*?\])", open("pyproject.toml").read(), re.M).group(1))
pip = [sys.executable, "-m", "pip", "install", "--quiet"]
subprocess.run(pip + ["--no-deps", *cl], check=True)
from importlib.metadata import requires
reqs = [r.replace("qpsolvers[open_source_solvers]", "qpsolvers") for r in requires("avalanche-lib") if "extra ==" not in r]
subprocess.run(pip + reqs, check=True)
PY
echo "$WANT" > "$STAMP"
