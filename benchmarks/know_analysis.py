"""What KNOWN does to a real trajectory, per kind: the authors' weights under both input conventions
and weightlab's shipped KNOWN (``weightlab_*`` rows).

    python benchmarks/know_analysis.py --trajectory ~/.cache/weightlab/know-bench/resnet20-cifar10-fmnist/trajectory

For each parameter kind: the typical size of a forgetting step |Θ⁰ − Θ¹|, of the weights, and of
KNOWN's first residual (θ̂⁻¹ − θ⁰) under the raw and the normalised input convention, with the
oldest-first order of the notes and the reversed order; and how often the residual points the same
way as the last forgetting step reversed (sign agreement with Θ⁰ − Θ¹, i.e. with Task Vector); its
correlation with the weight itself and the least-squares slope residual ≈ slope·θ⁰ (a negative
slope with correlation near −1 means KNOWN acts as weight shrinkage).
Writes benchmarks/results/know_analysis.json.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from _common import command, machine, write
from weightlab.know import Trajectory
from weightlab.know.predictors import load_known_set
from weightlab.know.predictors.base import flat_sequences
from weightlab.know.predictors.known import hypermodel_for


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trajectory", required=True)
    ap.add_argument("--name", default="know_analysis", help="output name under benchmarks/results/")
    ap.add_argument(
        "--write-shrink",
        default=None,
        help="also write shrink_x2/x4/x8.safetensors here: Θ⁰ with every predicted kind scaled by "
        "(1 + KNOWN's raw shrink slope)^k, a control that does only what KNOWN does on average",
    )
    args = ap.parse_args()
    traj = Trajectory.load(args.trajectory)
    out = {
        "command": command(),
        "machine": machine(),
        "trajectory": args.trajectory,
        "stages": traj.meta.get("stages"),
        "kinds": {},
    }
    nets = {c: load_known_set("authors", c) for c in ("raw", "normalized")} | {"weightlab": load_known_set()}
    for kind in ("conv", "fc", "bias", "head"):
        keys = traj.keys_of((kind,))
        if not keys:
            continue
        seq = flat_sequences(traj, keys, list(range(4, -1, -1)), torch.float32, dim=1)
        step = seq[:, -1] - seq[:, -2]  # Θ⁰ − Θ¹: the direction Task Vector extrapolates
        row = {
            "count": seq.shape[0],
            "mean_abs_weight": float(seq[:, -1].abs().mean()),
            "mean_abs_step": float(step.abs().mean()),
            "mean_abs_total_drift": float((seq[:, -1] - seq[:, 0]).abs().mean()),
        }
        for conv, set_ in nets.items():
            net = set_[hypermodel_for(kind, max(traj.stages[0][k].ndim for k in keys))]  # the head: its weight
            for order, s in (("oldest_first", seq), ("newest_first", seq.flip(1))):
                r = net.fused()(s)
                agree = ((r.sign() == step.sign()) & (step != 0)).float().sum() / (step != 0).float().sum()
                w = s[:, -1]
                corr = torch.corrcoef(torch.stack([r, w, step]))
                row[f"{conv}_{order}"] = {
                    "mean_abs_residual": float(r.abs().mean()),
                    "corr_with_weight": float(corr[0, 1]),
                    "corr_with_last_step": float(corr[0, 2]),
                    "shrink_slope": float((r * w).sum() / (w * w).sum()),
                    "residual_over_step": float(r.abs().mean() / max(row["mean_abs_step"], 1e-30)),
                    "sign_agreement_with_task_vector": float(agree),
                }
        out["kinds"][kind] = row
    if args.write_shrink:
        from pathlib import Path

        from weightlab.io import save_tensors

        for k in (1, 2, 3):
            state = {n: v.clone() for n, v in traj.stages[0].items()}
            for kind, row in out["kinds"].items():
                factor = (1.0 + row["raw_oldest_first"]["shrink_slope"]) ** k
                for key in traj.keys_of((kind,)):
                    state[key] = state[key] * factor
            save_tensors(Path(args.write_shrink) / f"shrink_x{2**k}.safetensors", state)
        out["shrink_controls"] = args.write_shrink
    path = write(f"{args.name}.json", out)
    print(json.dumps(out["kinds"], indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
