"""KNOWN meta-training record: collection size and throughput, validation / test L1, and shipping.

    python benchmarks/know_meta.py --data ~/.cache/weightlab/meta/v1 --trained ~/.cache/weightlab/meta/v1-known [--ship]

Reads a meta-dataset folder (``weightlab know meta collect``) and a training folder
(``weightlab know meta train``) and writes ``benchmarks/results/know_meta/summary.json`` (machine,
command, rows/s per collection call on this machine, GB per 1,000 runs, how many runs forget, the L1
tables) with ``loss.png`` and ``MODEL_CARD.md`` (``--name``: another folder, e.g. ``know_meta_v2``).
``--ship`` copies the trained hypermodels, their training.json and model card into the package
(``weightlab/know/weights``, the default KNOWN)
and the mini set of held-out rows to ``tests/data/known_mini.safetensors``, checking first that the
copies reproduce the recorded mini-set L1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _common import RESULTS, command, machine, write
from weightlab.io import read_json
from weightlab.know.meta.collect import MANIFEST
from weightlab.know.meta.pipeline import _collection_summary, check_mini

TESTS_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--trained", type=Path, required=True)
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--name", default="know_meta", help="results folder under benchmarks/results (default know_meta)")
    args = ap.parse_args()
    manifest = read_json(args.data / MANIFEST)
    report = read_json(args.trained / "training.json")
    runs = manifest["runs"]
    size = sum(r["bytes"] for r in runs)
    calls = [
        {**c, "rows_per_s": round(c["rows"] / c["seconds"], 1), "runs_per_min": round(60 * c["runs"] / c["seconds"], 2)}
        for c in manifest.get("collections", [])
        if c.get("runs")
    ]
    summary = {
        "machine": machine(),
        "command": command(),
        "meta_dataset": str(args.data),
        "collection": {
            "runs": len(runs),
            "rows": sum(sum(r["rows"].values()) for r in runs),
            "bytes": size,
            "gb_per_1000_runs": round(size / len(runs) * 1000 / 1e9, 3),
            "run_seconds_single_core": {
                "mean": round(sum(r["seconds"] for r in runs) / len(runs), 2),
                "max": max(r["seconds"] for r in runs),
            },
            "calls": calls,
        },
        "training": {
            k: {
                key: row.get(key)
                for key in ("train_rows", "val_rows", "test_rows", "val_l1", "test_l1", "test_l1_by_arch", "mini_l1")
            }
            | {"epochs": len(row["history"]["train_l1"]), "seconds": row["history"].get("seconds")}
            for k, row in report["models"].items()
        },
        "split": {k: len(v) for k, v in report["split"].items()},
        "forgetting": _collection_summary(manifest)["forgetting"],
        "protocols": _collection_summary(manifest)["ranges"]["protocols"],
        "test_archs": report["test_archs"],
        "test_datasets": report["test_datasets"],
        "train_command": report.get("command"),
    }
    out = RESULTS / args.name
    path = write(f"{args.name}/summary.json", summary)
    for name in ("loss.png", "MODEL_CARD.md"):
        shutil.copyfile(args.trained / name, out / name)
    print(f"wrote {path}")
    if args.ship:
        from weightlab.know.predictors.known import SHIPPED_DIR

        for kind, (recorded, now) in check_mini(args.trained, args.trained / "mini_test.safetensors", report).items():
            if abs(now - recorded) > 1e-6 * abs(recorded):
                raise SystemExit(f"{kind}: mini-set L1 {now} does not reproduce the recorded {recorded}")
        SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
        for name in (
            "KNOWN_Conv.safetensors",
            "KNOWN_FC.safetensors",
            "KNOWN_Bias.safetensors",
            "training.json",
            "MODEL_CARD.md",
        ):
            shutil.copyfile(args.trained / name, SHIPPED_DIR / name)
        TESTS_DATA.mkdir(exist_ok=True)
        shutil.copyfile(args.trained / "mini_test.safetensors", TESTS_DATA / "known_mini.safetensors")
        print(f"shipped to {SHIPPED_DIR} and {TESTS_DATA / 'known_mini.safetensors'}")
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
