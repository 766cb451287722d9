"""Pretrain the small timm ViT of the ``vit-multi`` suite on CIFAR-10 (no ViT weights exist offline here).

    python benchmarks/pretrain_vit_cifar10.py [--epochs 3] [--out ~/.cache/weightlab/vit_cifar10]

ViT (timm ``vit_tiny_patch16_224`` built at 32x32, patch 4, dim 96, depth 6, 3 heads; 0.67M
parameters) trained from scratch on the 50,000 CIFAR-10 JPEG training images: AdamW lr 1e-3,
weight decay 0.05, cosine schedule, batch 128, random crop (pad 4) + flip. Writes
``vit_cifar10.safetensors`` (atomically, after every epoch: rerun to continue) and a JSON record
with the test accuracy, machine and command into benchmarks/results/.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import command, machine, write
from weightlab import paths
from weightlab.bench.suites import VIT_CIFAR
from weightlab.data import load_dataset
from weightlab.data.arrays import ModelInput
from weightlab.engine import evaluate_accuracy, make_optimizer, train_epoch
from weightlab.io import load_weights, read_json, save_tensors, write_json
from weightlab.models import create_model


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    i, j = torch.randint(0, 9, (2,), generator=g).tolist()
    x = padded[..., i : i + 32, j : j + 32]
    flip = torch.rand(n, generator=g) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=paths.cache_root() / "vit_cifar10")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if paths.data_root() is None:
        print("skipped: no shared data (set WEIGHTLAB_SHARED)")
        return 0
    torch.manual_seed(args.seed)
    model = create_model("timm:vit_tiny_patch16_224", **VIT_CIFAR)
    weights, state_path = args.out / "vit_cifar10.safetensors", args.out / "state.json"
    done = 0
    if weights.is_file() and state_path.is_file():
        model.load_state_dict(load_weights(weights))
        done = read_json(state_path)["epochs_done"]
    train, test = load_dataset("cifar10", "train"), load_dataset("cifar10", "test")
    transform = ModelInput.from_cfg(model.weightlab_cfg)
    opt = make_optimizer("adamw", model.parameters(), lr=1e-3, weight_decay=0.05)
    steps = max(1, args.epochs * math.ceil(len(train) / 128))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s + done * steps // max(args.epochs, 1), steps) / steps))
    )
    g = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(done, args.epochs):
        batches = (
            (transform(augment(x, g)), y)
            for x, y in train.batches(128, None, shuffle=True, seed=args.seed * 100 + epoch)
        )
        train_epoch(
            model,
            batches,
            opt,
            loss_fn=lambda b, x, y: F.cross_entropy(model(x), y, label_smoothing=0.1),
            clip_norm=1.0,
            scheduler=sched,
            total=math.ceil(len(train) / 128),
            desc=f"epoch {epoch}",
            progress=True,
        )
        save_tensors(weights, model.state_dict())
        write_json(state_path, dict(epochs_done=epoch + 1))
    acc = evaluate_accuracy(model, test.batches(500, model.weightlab_cfg))
    record = dict(
        machine=machine(),
        command=command(),
        model=model.weightlab_cfg.to_dict(),
        epochs=args.epochs,
        params=sum(p.numel() for p in model.parameters()),
        test_top1=acc,
        train_seconds_this_call=time.perf_counter() - start,
        weights=str(weights),
    )
    write("pretrain_vit_cifar10.json", record)
    print(f"ViT CIFAR-10 test top-1 {acc:.2f}% -> {weights}")
    return 0


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(run_script(main))
