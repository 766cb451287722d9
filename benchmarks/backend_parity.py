"""A suite run serially, on worker processes and on a local Ray runtime: the same results bit for bit.

    python benchmarks/backend_parity.py [--suite smoke] [--seeds 0,1] [--workers 2]

Runs the RECAST suite three times into a temporary folder (serial with one torch thread per run;
``processes`` and ``ray`` with ``--workers`` workers of one thread each) and compares every run record
(accuracy matrices, validation accuracies, epochs, sizes; only wall times may differ) and the run order.
Writes ``benchmarks/results/backend_parity.json`` with the wall time of each backend.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import command, machine, write
from weightlab.bench.incremental import run_suite
from weightlab.bench.suites import get_suite
from weightlab.parallel import Backend


def _strip(runs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if "wall" not in k} for r in runs]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default="smoke")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    suite = get_suite(args.suite)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    backends = {
        "serial": Backend("serial", threads=1),
        "processes": Backend("processes", workers=args.workers),
        "ray": Backend("ray", workers=args.workers),
    }
    results, walls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend in backends.items():
            t = time.perf_counter()
            payload = run_suite(suite, Path(tmp) / name, progress=False, seeds=seeds, backend=backend)
            walls[name] = time.perf_counter() - t
            results[name] = _strip(payload["runs"])
            print(f"{name}: {len(results[name])} runs in {walls[name]:.1f} s", flush=True)
    equal = {name: results[name] == results["serial"] for name in ("processes", "ray")}
    payload = dict(
        command=command(),
        machine=machine(),
        device="cpu",
        suite=args.suite,
        seeds=list(seeds),
        runs=len(results["serial"]),
        run_order=[[r.get("label") or r["method"], r["seed"]] for r in results["serial"]],
        wall_seconds=walls,
        equal_to_serial=equal,
        average_accuracy={name: [r["average_accuracy"] for r in rs] for name, rs in results.items()},
    )
    path = write("backend_parity.json", payload)
    print(equal, f"wrote {path}")
    return 0 if all(equal.values()) else 1


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
