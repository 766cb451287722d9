"""Write a small copy of the shared data sets, in the layout ``--data-root`` reads, for a machine that
cannot see ``../shared`` (the lent GPU machine takes at most 64 MiB of working tree).

    python scripts/device_data.py ../shared/data .devdata --train 8000 --test 2000

MNIST / Fashion-MNIST: the first N images of each idx file (rewritten with the new count);
CIFAR-10: the first N/10 JPEGs of each class (sorted names) as ``cifar10-jpeg/{train,test}/<class>/``.
The copy is a subset: whatever is trained on it says so (the meta-dataset's model card does).
"""

from __future__ import annotations

import argparse
import struct
import sys
import tarfile
from pathlib import Path


def idx_head(src: Path, dst: Path, n: int) -> None:
    data = src.read_bytes()
    magic, count = struct.unpack(">II", data[:8])
    dims = magic & 0xFF
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    item = 1
    for d in shape[1:]:
        item *= d
    n = min(n, count)
    header = struct.pack(">I", magic) + struct.pack(f">{dims}I", n, *shape[1:])
    offset = 4 + 4 * dims
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(header + data[offset : offset + n * item])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shared_data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--test", type=int, default=2000)
    args = ap.parse_args()
    for folder in ("MNIST", "FashionMNIST"):
        raw = args.shared_data / folder / "raw"
        if not raw.is_dir():
            print(f"skipping {folder}: {raw} not found", file=sys.stderr)
            continue
        for prefix, n in (("train", args.train), ("t10k", args.test)):
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
                idx_head(raw / f"{prefix}-{kind}", args.out / folder / "raw" / f"{prefix}-{kind}", n)
    tar = args.shared_data / "cifar10-jpeg.tar"
    if tar.is_file():
        per_class = {"train": args.train // 10, "test": args.test // 10}
        taken: dict[tuple[str, str], int] = {}
        with tarfile.open(tar) as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
            for m in members:
                parts = Path(m.name).parts
                parts = parts[1:] if parts[0] == "cifar10-jpeg" else parts
                if len(parts) != 3 or parts[0] not in per_class:
                    continue
                key = (parts[0], parts[1])
                if taken.get(key, 0) >= per_class[parts[0]]:
                    continue
                taken[key] = taken.get(key, 0) + 1
                dst = args.out / "cifar10-jpeg" / Path(*parts)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(tf.extractfile(m).read())
    else:
        print(f"skipping CIFAR-10: {tar} not found", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
