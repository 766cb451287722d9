"""KNOW transfer benchmark suites (the KNOW paper's Table 1 protocol, sized for two CPU cores).

    python benchmarks/know_transfer.py --suite resnet20-cifar10-fmnist [--seeds 42,1998]

The heavy artefacts (trajectory, predicted weights) go to ``<cache>/know-bench/<suite>``; the
report (results.json with machine and command, results.md, trajectory_pca.png) is copied to
benchmarks/results/know/<suite>/. Resumable: rerun the same command after an interruption.
Same as ``weightlab know bench --suite``. Suites on the shared data skip cleanly without it.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from _common import RESULTS, command
from weightlab import paths
from weightlab.bench.know import get_suite, run_suite
from weightlab.io import read_json, write_json


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", required=True)
    ap.add_argument("--seeds", default=None)
    args = ap.parse_args()
    suite = get_suite(args.suite)
    if suite.needs_shared and paths.data_root() is None:
        print("skipped: no shared data (set WEIGHTLAB_SHARED)")
        return 0
    work = paths.cache_root() / "know-bench" / suite.name
    run_suite(suite.name, work, seeds=tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None)
    out = RESULTS / "know" / suite.name
    out.mkdir(parents=True, exist_ok=True)
    payload = read_json(work / "results.json")
    payload["command"] = command()
    write_json(out / "results.json", payload)
    for name in ("results.md", "trajectory_pca.png"):
        if (work / name).is_file():
            shutil.copyfile(work / name, out / name)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
