"""Compare two output folders of ``benchmarks/parity.sh``: every JSON value (timings, the machine and
recorded commands left out) and every safetensors tensor, bit for bit. Exit 1 when anything differs.

    python benchmarks/parity_compare.py /tmp/parity/old /tmp/parity/new
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SKIP = {"machine", "command", "argv", "merged", "weightlab_version", "file_bytes", "trajectory", "source"}


def _here(v):
    """A path inside the checkout (the shipped KNOWN weights) named from the package: the two runs are
    two checkouts in two places."""
    return (
        "<checkout>/src/weightlab/" + v.split("/src/weightlab/", 1)[1]
        if isinstance(v, str) and "/src/weightlab/" in v
        else v
    )


def _walk(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            if k in SKIP or "seconds" in k or k.endswith("_s"):
                continue
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, _here(x)


def _same_tensors(a: Path, b: Path) -> bool:
    ta, tb = load_file(a), load_file(b)
    return set(ta) == set(tb) and all(
        ta[k].dtype == tb[k].dtype
        and ta[k].shape == tb[k].shape
        and torch.equal(ta[k].reshape(-1).view(torch.uint8), tb[k].reshape(-1).view(torch.uint8))
        for k in ta
    )


def main(a: Path, b: Path) -> int:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.suffix in (".json", ".safetensors"))
    differ = 0
    for rel in files:
        pa, pb = a / rel, b / rel
        if not pb.is_file():
            print(f"missing in {b}: {rel}")
            differ += 1
        elif rel.suffix == ".json":
            da, db = dict(_walk(json.loads(pa.read_text()))), dict(_walk(json.loads(pb.read_text())))
            keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
            if keys:
                differ += 1
                print(f"{rel}: " + "; ".join(f"{k}: {da.get(k)!r} -> {db.get(k)!r}" for k in keys[:4]))
        elif not _same_tensors(pa, pb):
            differ += 1
            print(f"{rel}: tensors differ")
    print(f"{len(files)} JSON / safetensors files compared, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
