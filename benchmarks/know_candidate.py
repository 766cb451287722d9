"""Evaluate a candidate KNOWN (a folder of KNOWN_{Conv,FC,Bias}.safetensors) on a finished KNOW suite,
against the shipped KNOWN and every control of that suite, on the same trajectories and transfer runs.

    python benchmarks/know_candidate.py --suite cifar5-smallcnn-faithful \\
        --from benchmarks/results/know/cifar5-smallcnn-faithful --known-weights runs/v2-known \\
        --out benchmarks/results/know/cifar5-smallcnn-faithful-known-v2 [--backend processes --workers 2]

The new folder reuses the suite's trajectories, controls and predictions (weights linked, JSON copied)
and its finished transfer runs of every row but weightlab's KNOWN; only the candidate's predictions and
their transfer runs are made, with the suite's lr grid and seeds. Writes the suite's usual
results.json / results.md there and ``candidate.json`` (naive, the controls and the KNOWN rows of both).
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import replace
from pathlib import Path

from _common import command, machine
from weightlab.bench.know import get_suite, run_suite
from weightlab.bench.reports.know import row_name as _row_name
from weightlab.bench.reports.know import summarize
from weightlab.io import read_json, write_json
from weightlab.know.protocol import suite_record as _suite_record
from weightlab.parallel import Backend


def _is_known_row(row: str) -> bool:
    return _row_name(row).startswith("known_x")


def mirror(src: Path, out: Path) -> None:
    """``out`` as a copy of ``src`` without weightlab-KNOWN predictions: weights linked, JSON copied."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or rel.name == "results.json" or rel.parts[0] not in {p.name for p in src.glob("traj_*")}:
            continue
        if rel.parent.name == "predictions" and rel.name.startswith("known_x"):
            continue
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            continue
        if path.suffix == ".safetensors":
            os.symlink(path.resolve(), dst)
        else:
            shutil.copyfile(path, dst)


def evaluate_candidate(suite, src: Path, weights: Path, out: Path, *, backend=None) -> dict:
    """Run ``suite`` in ``out`` with ``weights`` as its KNOWN, reusing everything else from ``src``."""
    suite = replace(suite, known_weights=str(Path(weights).resolve()))
    if not (out / "results.json").is_file():
        mirror(src, out)
        finished = read_json(src / "results.json")
        kept = [r for r in finished["runs"] if not _is_known_row(r["row"])]
        write_json(out / "results.json", {**finished, "suite": _suite_record(suite), "runs": kept})
    return run_suite(suite, out, progress=False, backend=backend)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", required=True)
    ap.add_argument("--from", dest="src", type=Path, required=True, help="the finished suite folder")
    ap.add_argument("--known-weights", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--backend", default="serial")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--label", default="candidate")
    args = ap.parse_args()
    shipped = read_json(args.src / "results.json")
    backend = Backend(args.backend, args.workers, threads=1)
    results = evaluate_candidate(get_suite(args.suite), args.src, args.known_weights, args.out, backend=backend)

    def known_rows(res: dict) -> dict:
        table = {row["row"]: row for row in summarize(res)}
        return {k: v for k, v in table.items() if k == "naive" or k.startswith(("known", "shrink", "truth"))}

    report = {
        "machine": machine(),
        "command": command(),
        "suite": args.suite,
        "candidate": str(args.known_weights),
        "shipped": known_rows(shipped),
        args.label: known_rows(results),
    }
    write_json(args.out / "candidate.json", report)
    print(f"wrote {args.out / 'candidate.json'}")
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    raise SystemExit(run_script(main))
