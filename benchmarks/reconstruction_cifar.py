"""Neural Mimicry on the real pretrained CIFAR-10 models (shared/models) with top-1 on the
CIFAR-10 JPEG test set (10,000 images unless --eval-limit).

For each model and method: mean/min weight cosine, feature cosine and top-1 of the original and
the reconstructed model. Issue-2 target: top-1 within 0.3 points and weight cosine >= 0.999.
Skips (exit 0 with a message) when the shared folder is absent.

    python benchmarks/reconstruction_cifar.py [--models resnet56 convmixer256_d8_k9_p4] [--eval-limit N]
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import torch

    from _common import command, machine, write
    from weightlab import paths
    from weightlab.data import load_dataset
    from weightlab.models import create_model
    from weightlab.recast import MimicryConfig, preset
    from weightlab.recast.pipeline import run_mimicry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet56", "convmixer256_d8_k9_p4"])
    ap.add_argument("--methods", nargs="+", default=["closed_form", "recipe", "closed_form+recipe"])
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--out", default="runs/bench_reconstruction")
    args = ap.parse_args()
    if paths.shared_root() is None:
        print("shared folder not found (set WEIGHTLAB_SHARED); skipping")
        return
    torch.manual_seed(0)
    test = load_dataset("cifar10", "test", limit=args.eval_limit)
    configs = {  # n=2 templates, K=2 coefficient sets, groups of 2 consecutive layers
        "resnet56": ("cifar_resnet", preset("cifar-resnet", templates=2, layers_per_group=2)),
        "convmixer256_d8_k9_p4": ("convmixer", preset("convmixer")),
    }
    rows = []
    for name in args.models:
        family, cfg = configs[name]
        model = create_model(name, pretrained=True)
        for method in args.methods:
            t = time.perf_counter()
            _, rep = run_mimicry(
                model,
                cfg,
                MimicryConfig.for_family(family),
                method=method,
                model_name=name,
                out_dir=f"{args.out}/{name}",
                test_data=test,
                stem=method.replace("+", "_"),
                progress=False,
            )
            row = dict(
                model=name,
                method=method,
                weight_cosine_mean=rep["weight_cosine_mean"],
                weight_cosine_min=rep["weight_cosine_min"],
                feature_cosine_mean=rep["feature_cosine_mean"],
                top1_original=rep["top1_original"],
                top1_reconstructed=rep["top1_reconstructed"],
                top1_delta=rep["top1_delta"],
                mimicry_seconds=rep["mimicry"]["seconds"],
                iterations=rep["mimicry"]["iterations"],
                counts=rep["counts"],
                mean_frobenius_diversity=sum(b["frobenius_diversity"] for b in rep["banks"]) / len(rep["banks"]),
                mean_sv_entropy=sum(b["sv_entropy"] for b in rep["banks"]) / len(rep["banks"]),
                wall_seconds=time.perf_counter() - t,
            )
            rows.append(row)
            print(
                {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items() if k != "counts"}, flush=True
            )
    path = write(
        "reconstruction_cifar.json",
        dict(
            benchmark="reconstruction_cifar",
            command=command(),
            machine=machine(),
            test_set=dict(name="cifar10-jpeg", size=len(test)),
            targets=dict(top1_within=0.3, weight_cosine_mean=0.999),
            rows=rows,
        ),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    from weightlab.errors import run_script

    sys.exit(run_script(main))
