"""``weightlab quickstart``: a real, offline, end-to-end RECAST run in a couple of minutes on 2 cores.

Without shared data: train a CIFAR ResNet-20 on scikit-learn's digits (8x8 upsampled to 32x32),
then rewrite it with RECAST and reconstruct it two ways (closed form; the authors' recipe).
With ``--data-root`` pointing at the shared data: the shared pretrained ResNet-20 on 2,000
CIFAR-10 JPEG test images, no training.
"""

from __future__ import annotations

import time
from pathlib import Path

from weightlab import paths
from weightlab.data import load_dataset
from weightlab.errors import WeightlabError
from weightlab.io import write_json, write_text
from weightlab.models import create_model
from weightlab.recast.config import preset
from weightlab.recast.mimicry import MimicryConfig
from weightlab.recast.pipeline import run_mimicry
from weightlab.recast.report import format_table, summary_rows
from weightlab.train import fit_classifier


def run_quickstart(data_root: Path | None = None, out: Path | None = None, seed: int = 0, progress: bool = True) -> int:
    out = Path(out or "runs/quickstart")
    t0 = time.perf_counter()
    if data_root is not None:
        if not Path(data_root).is_dir():
            raise WeightlabError(f"--data-root {data_root}: not a folder")
        print("[1/3] loading the shared pretrained CIFAR-10 ResNet-20 and 2,000 CIFAR-10 JPEG test images")
        model = create_model("resnet20", pretrained=True)
        test = load_dataset("cifar10", "test", data_root, limit=2000, seed=seed)
        source = "shared pretrained CIFAR-10 ResNet-20, 2,000 CIFAR-10 JPEG test images"
    else:
        model = create_model("resnet20")
        train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
        print(f"[1/3] training ResNet-20 on scikit-learn digits ({len(train)} images, 6 epochs)")
        fit_classifier(model, train, model.weightlab_cfg, epochs=6, lr=2e-3, batch_size=64, seed=seed,
                       progress=progress)
        source = "ResNet-20 trained here on scikit-learn digits (1,437 train / 360 test)"
    config = preset("cifar-resnet", templates=2, layers_per_group=2, coef_sets=2)
    runs = {}
    for step, (method, mcfg) in enumerate((
            ("closed_form", MimicryConfig.for_family("cifar_resnet")),
            ("recipe", MimicryConfig.for_family("cifar_resnet", iterations=1000, lr_step=200))), start=2):
        print(f"[{step}/3] RECAST ({config.templates} templates, K={config.coef_sets}, groups of "
              f"{config.layers_per_group}) + Neural Mimicry: {method}")
        _, report = run_mimicry(model, config, mcfg, method=method, model_name="resnet20", out_dir=out,
                                test_data=test, seed=seed, progress=progress, stem=method)
        runs[method] = report
        print(format_table(summary_rows(report)))
    summary = dict(source=source, seconds=time.perf_counter() - t0, shared_root=str(paths.shared_root()),
                   runs={k: {x: v.get(x) for x in ("weight_cosine_mean", "weight_cosine_min", "top1_original",
                                                   "top1_reconstructed", "feature_cosine_mean")}
                         for k, v in runs.items()})
    write_json(out / "quickstart.json", summary)
    lines = ["# weightlab quickstart", "", f"Source: {source}", "",
             "| method | weight cosine mean | top-1 original | top-1 reconstructed |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['weight_cosine_mean']:.6f} | {v['top1_original']:.2f} | {v['top1_reconstructed']:.2f} |"
              for k, v in summary["runs"].items()]
    lines += ["", "KNOW / KNOWN joins the quickstart with its own issue."]
    write_text(out / "quickstart.md", "\n".join(lines) + "\n")
    print(f"\ndone in {summary['seconds']:.1f} s; reports in {out}/")
    return 0
