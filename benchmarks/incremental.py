"""Task-incremental benchmark suites (RECAST paper Tables 1, 2 and Fig. 3) on the shared data and models.

    python benchmarks/incremental.py --suite resnet20-multi [--methods head,recast] [--seeds 42]

Writes benchmarks/results/incremental/<suite>/{results.json,results.md,*.png}; resumable (rerun the
same command after an interruption). Same as ``weightlab recast bench --suite``. Skips cleanly
without the shared data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import RESULTS, command
from weightlab import paths
from weightlab.bench.incremental import get_suite, run_suite


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", required=True)
    ap.add_argument("--methods", default=None)
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--weights", default=None, help="local backbone weights (the ViT suite)")
    args = ap.parse_args()
    if paths.data_root() is None:
        print("skipped: no shared data (set WEIGHTLAB_SHARED)")
        return 0
    suite = get_suite(args.suite)
    if args.weights:
        from dataclasses import replace

        suite = replace(suite, weights=args.weights)
    out = RESULTS / "incremental" / suite.name
    run_suite(
        suite,
        out,
        methods=args.methods.split(",") if args.methods else None,
        seeds=tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None,
        command=command(),
    )
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(run_script(main))
