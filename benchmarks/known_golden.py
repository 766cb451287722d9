"""Golden parity of the KNOWN port: max abs error against the authors' Keras outputs.

    python benchmarks/known_golden.py

For each official model (Conv, FC, Bias): the plain module in float32 and float64 and the folded
kernel, against ``known_official_golden.npz`` (4,096 sequences each), under the raw convention the
golden file was made with. Writes benchmarks/results/known_golden.json; skips without the shared folder.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from _common import command, machine, write
from weightlab.know import load_official_known
from weightlab.know.predictors import official_known_dir


def main() -> int:
    folder = official_known_dir()
    if folder is None:
        print("skipped: no shared folder (set WEIGHTLAB_SHARED)")
        return 0
    out = {"command": command(), "machine": machine(), "models": {}}
    with np.load(folder / "known_official_golden.npz") as z:
        for kind in ("Conv", "FC", "Bias"):
            net = load_official_known(folder / f"KNOWN_{kind}.h5")
            seq, want = torch.from_numpy(z[f"{kind}_seq"]), torch.from_numpy(z[f"{kind}_residual"]).double()
            with torch.no_grad():
                f32 = net(seq).double()
                fused = net.fused()(seq).double()
                f64 = net.double()(seq.double())
            out["models"][kind] = {
                "sequences": int(seq.shape[0]),
                "max_abs_residual": float(want.abs().max()),
                "max_abs_error_float32": float((f32 - want).abs().max()),
                "max_abs_error_float64": float((f64 - want).abs().max()),
                "max_abs_error_fused_kernel": float((fused - want).abs().max()),
            }
    path = write("known_golden.json", out)
    for k, v in out["models"].items():
        print(k, {a: f"{b:.3g}" for a, b in v.items()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
