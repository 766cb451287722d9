"""Streaming from disk against the in-memory path on real data: the shared CIFAR-10 JPEG tree (50,000
training images as an ImageFolder).

    WEIGHTLAB_SHARED=../shared python benchmarks/streaming_cifar10.py [--workers 2] [--batches 100]

1. Equality: the first ``--batches`` shuffled batches (seed 0, batch 128, ResNet-20 normalisation) read by
   ``StreamingImages`` with ``--workers`` DataLoader workers equal the in-memory ``ImageArrays`` batches.
2. Throughput (images/s) of both paths over those batches, and of the streamed path with augmentation.
3. The same task learnt from both (the shared pretrained ResNet-20, head + RECAST coefficients on
   cifar10:0-4, 1,000 training images, 2 epochs): the same validation and test accuracy.
Writes ``benchmarks/results/streaming_cifar10.json``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from _common import command, machine, write
from weightlab.data import SplitSizes, build_task, load_dataset
from weightlab.data.sources import _cifar10_folder
from weightlab.data.streaming import StreamingImages
from weightlab.incremental import AdaptConfig, TaskModel, accuracy, learn_task, parse_method
from weightlab.models import create_model
from weightlab.recast.pipeline import recast_base


def _rate(batches, n: int) -> tuple[float, list]:
    out, t = [], time.perf_counter()
    for i, b in enumerate(batches):
        out.append(b)
        if i + 1 == n:
            break
    dt = time.perf_counter() - t
    return sum(len(y) for _, y in out) / dt, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=100)
    args = ap.parse_args()
    folder = _cifar10_folder(None) / "train"
    cfg = create_model("resnet20", pretrained=False).weightlab_cfg
    mem = load_dataset("cifar10", "train")
    stream = StreamingImages.image_folder(folder, "cifar10-train", workers=args.workers)
    assert torch.equal(stream.labels, mem.labels)
    mem_rate, a = _rate(mem.batches(128, cfg, shuffle=True, seed=0), args.batches)
    st_rate, b = _rate(stream.batches(128, cfg, shuffle=True, seed=0), args.batches)
    equal = all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    aug_rate, _ = _rate(stream.with_options(augment="crop_flip").batches(128, cfg, shuffle=True, seed=0), args.batches)

    plain = create_model("resnet20", pretrained=True)
    base = recast_base(plain, dict(templates="auto", layers_per_group=2))
    learnt = {}
    for label, opts in (("in memory", None), ("streamed", dict(workers=args.workers))):
        task = build_task("cifar10:0-4", None, SplitSizes(1000, 300, 1000), stream=opts)
        tm = TaskModel.from_base(base, parse_method("recast"))
        t = time.perf_counter()
        res = learn_task(tm, task, AdaptConfig(epochs=2), progress=False)
        learnt[label] = dict(
            val_accuracy=res.val_accuracy,
            test_accuracy=accuracy(tm, task.name, task.test),
            wall_s=time.perf_counter() - t,
        )
        print(label, learnt[label], flush=True)
    payload = dict(
        command=command(),
        machine=machine(),
        device="cpu",
        data="shared CIFAR-10 JPEG, train split as an ImageFolder (50,000 images)",
        workers=args.workers,
        batches=args.batches,
        batch_size=128,
        batches_equal=equal,
        images_per_second=dict(in_memory=mem_rate, streamed=st_rate, streamed_crop_flip=aug_rate),
        learn_task=learnt,
        same_accuracy=learnt["in memory"] == {**learnt["streamed"], "wall_s": learnt["in memory"]["wall_s"]},
    )
    path = write("streaming_cifar10.json", payload)
    print({k: payload[k] for k in ("batches_equal", "images_per_second", "same_accuracy")})
    print(f"wrote {path}")
    return 0 if equal else 1


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
