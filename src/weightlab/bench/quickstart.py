"""``weightlab quickstart``: a real, offline, end-to-end RECAST and KNOW run in about two minutes on 2 cores.

Without shared data: train a CIFAR ResNet-20 on scikit-learn's digits (8x8 upsampled to 32x32),
then rewrite it with RECAST and reconstruct it two ways (closed form; the authors' recipe), then
learn two tasks (digits 0-4, digits 5-9, new heads) with head only and with RECAST coefficients.
With ``--data-root`` pointing at the shared data: the shared pretrained ResNet-20 on 2,000
CIFAR-10 JPEG test images (no training), and tasks MNIST 0-4 and Fashion-MNIST 0-4.
Then KNOW: a small CNN pretrained on digits 0-4 (MNIST with the shared data), progressive forgetting,
predictions at x2 and x8, and transfer to digits 5-9 (Fashion-MNIST), against naive transfer.
"""

from __future__ import annotations

import time
from pathlib import Path

from weightlab import paths
from weightlab.data import SplitSizes, build_sequence, load_dataset
from weightlab.engine import fit_classifier, place
from weightlab.errors import WeightlabError
from weightlab.incremental import AdaptConfig
from weightlab.io import write_json, write_text
from weightlab.models import create_model, get_family
from weightlab.recast.config import preset
from weightlab.recast.mimicry import MimicryConfig
from weightlab.recast.pipeline import recast_base, run_mimicry
from weightlab.recast.report import format_table, summary_rows


def run_quickstart(
    data_root: Path | None = None,
    out: Path | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | None = None,
    smoke: bool = False,
) -> int:
    """The quickstart (see the module's text). ``smoke``: the same flow at toy sizes, in seconds (1 training
    epoch, 20 mimicry iterations, 1-2 epochs per task and transfer): a check of an install or a device whose
    numbers mean nothing."""
    out = Path(out or "runs/quickstart")
    t0 = time.perf_counter()
    if data_root is not None:
        if not Path(data_root).is_dir():
            raise WeightlabError(f"--data-root {data_root}: not a folder")
        print("[1/5] loading the shared pretrained CIFAR-10 ResNet-20 and 2,000 CIFAR-10 JPEG test images")
        model = create_model("resnet20", pretrained=True)
        place(model, device)
        test = load_dataset("cifar10", "test", data_root, limit=2000, seed=seed)
        source = "shared pretrained CIFAR-10 ResNet-20, 2,000 CIFAR-10 JPEG test images"
        tasks = build_sequence("mnist:0-4,fashion_mnist:0-4", data_root, SplitSizes(500, 200, 1000))
    else:
        model = create_model("resnet20")
        train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
        print(f"[1/5] training ResNet-20 on scikit-learn digits ({len(train)} images, {1 if smoke else 6} epochs)")
        fit_classifier(
            model,
            train,
            model.weightlab_cfg,
            epochs=1 if smoke else 6,
            lr=2e-3,
            batch_size=64,
            seed=seed,
            progress=progress,
            device=device,
        )
        source = "ResNet-20 trained here on scikit-learn digits (1,437 train / 360 test)"
        tasks = build_sequence("digits:0-4,digits:5-9", None, SplitSizes(None, 100, None))
    config = preset("cifar-resnet", templates=2, layers_per_group=2, coef_sets=2)
    adapt = AdaptConfig(epochs=1 if smoke else 8, device=device or "cpu")
    runs = {}
    for step, (method, mcfg) in enumerate(
        (
            ("closed_form", MimicryConfig.for_family(get_family(model))),
            ("recipe", MimicryConfig.for_family(get_family(model), iterations=20 if smoke else 1000, lr_step=200)),
        ),
        start=2,
    ):
        print(
            f"[{step}/5] RECAST ({config.templates} templates, K={config.coef_sets}, groups of "
            f"{config.layers_per_group}) + Neural Mimicry: {method}"
        )
        _, report = run_mimicry(
            model,
            config,
            mcfg,
            method=method,
            model_name="resnet20",
            out_dir=out,
            test_data=test,
            seed=seed,
            progress=progress,
            stem=method,
            device=device,
        )
        runs[method] = report
        print(format_table(summary_rows(report)))
    summary = dict(
        source=source,
        seconds=time.perf_counter() - t0,
        shared_root=str(paths.shared_root()),
        runs={
            k: {
                x: v.get(x)
                for x in (
                    "weight_cosine_mean",
                    "weight_cosine_min",
                    "top1_original",
                    "top1_reconstructed",
                    "feature_cosine_mean",
                )
            }
            for k, v in runs.items()
        },
    )
    lines = [
        "# weightlab quickstart",
        "",
        f"Source: {source}",
        "",
        "| method | weight cosine mean | top-1 original | top-1 reconstructed |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['weight_cosine_mean']:.6f} | {v['top1_original']:.2f} | {v['top1_reconstructed']:.2f} |"
        for k, v in summary["runs"].items()
    ]
    print(
        f"[4/5] task-incremental learning on {', '.join(t.name for t in tasks)}: head only vs RECAST "
        f"coefficients + head ({adapt.epochs} epochs per task, epoch chosen on validation)"
    )
    summary["incremental"] = _incremental(model, tasks, adapt, seed, progress, device)
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "quickstart.json", summary)
    lines += [
        "",
        "| task-incremental method | trainable / task (+ head) | "
        + " | ".join(t.name for t in tasks)
        + " | average | zero forgetting |",
        "|---|---|" + "---|" * len(tasks) + "---|---|",
    ]
    for name, r in summary["incremental"].items():
        lines.append(
            f"| {name} | {r['trainable_per_task']} (+{r['head_per_task'][0]}) | "
            + " | ".join(f"{a:.2f}" for a in r["final_accuracy"])
            + f" | {r['average_accuracy']:.2f} | {'yes' if r['zero_forgetting'] else 'NO'} |"
        )
        print(
            f"  {name:7s} {r['trainable_per_task']:>4} numbers/task + head: test "
            + ", ".join(f"{a:.2f}" for a in r["final_accuracy"])
            + f"; zero forgetting: "
            f"{'yes' if r['zero_forgetting'] else 'NO'}"
        )
    summary["know"] = _know(out / "know", data_root, seed, progress, device, smoke)
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "quickstart.json", summary)
    lines += [
        "",
        "KNOW (progressive forgetting, weight prediction, transfer):",
        "",
        (out / "know" / "results.md").read_text().split("\n", 2)[2],
    ]
    write_text(out / "quickstart.md", "\n".join(lines) + "\n")
    print(f"\ndone in {summary['seconds']:.1f} s; reports in {out}/")
    return 0


def _know(
    out: Path, data_root: Path | None, seed: int, progress: bool, device: str | None = None, smoke: bool = False
) -> dict:
    """KNOW end to end on a small CNN: pretrain, forget (r=0.5, S=5), predict x2 and x8, transfer."""
    from dataclasses import replace

    from weightlab.bench.know import SUITES, run_suite
    from weightlab.bench.reports.know import summarize
    from weightlab.know.predictors import official_known_dir
    from weightlab.know.transfer import TransferConfig

    base = SUITES.get("mnist-fmnist-quick" if data_root is not None else "digits-smallcnn")
    authors = official_known_dir() is not None
    suite = replace(
        base,
        name=f"quickstart-{base.name}",
        predictors=("log_fit", "task_vector", "tsv", "known") + (("known_authors",) if authors else ()),
        steps=(1, 3),
        incremental=False,
        seeds=(seed,),
        transfer=TransferConfig(warmup_epochs=1 if smoke else 2, epochs=1 if smoke else 6, lr=1e-3, batch_size=64),
    )
    if smoke:
        suite = replace(suite, pretrain_epochs=2, source_train=300, target_train=200, eval_size=100)
        if suite.pretrain is not None:
            suite = replace(suite, pretrain=replace(suite.pretrain, epochs=2))
    known = (
        "weightlab's shipped KNOWN and the authors' weights"
        if authors
        else "weightlab's shipped KNOWN; the authors' weights are in the shared folder"
    )
    print(
        f"[5/5] KNOW: {suite.description}; forgetting r=0.5, S=5; LogFit, TaskVector, TSV, KNOWN at x2 and x8 "
        f"({known}); transfer {suite.transfer.warmup_epochs} warm-up + {suite.transfer.epochs} epochs"
    )
    import shutil

    shutil.rmtree(out, ignore_errors=True)  # the quickstart's own output: start afresh every time
    results = run_suite(suite, out, progress=progress, data_root=data_root, device=device)
    table = summarize(results)
    for r in table:
        gain = "" if r["row"] == "naive" else f" ({r['gain']:+.2f})"
        print(f"  {r['row']:16s} {r['mean']:.2f}{gain}")
    for line in _know_caveats(out, results):
        print(f"  note: {line}")
    return {r["row"]: {"accuracy": r["mean"], "gain": r["gain"]} for r in table}


def _know_caveats(out: Path, results: dict) -> list[str]:
    """What the quickstart's KNOW numbers cannot show: one seed (no error bars), the resolution of its test
    set, and whether its trajectory forgets at all (measured, from the trajectory's manifest)."""
    from weightlab.io import read_json

    lines = []
    n = (results.get("target") or {}).get("test")
    seeds = {r["seed"] for r in results.get("runs", [])}
    if n:
        lines.append(f"{n} test images: one image is {100 / n:.2f} points")
    if len(seeds) < 2:
        lines.append("one transfer seed: no error bars; a gain of a few images is inside the noise")
    for manifest in sorted(out.rglob("manifest.json")):
        check = read_json(manifest).get("forgetting") or {}
        if check.get("forgets") is False:
            acc = check["accuracy"]
            lines.append(
                f"the trajectory does not forget (D⁰ test accuracy {acc[0]:.1f} -> {acc[-1]:.1f}): it does not "
                "test KNOW's hypothesis; 'weightlab know bench' runs suites that do"
            )
    return lines


def _incremental(model, tasks, adapt: AdaptConfig, seed: int, progress: bool, device: str | None = None) -> dict:
    from weightlab.incremental.sequence import run_sequence

    bases = {
        "head": model,
        "recast": recast_base(model, dict(templates="auto", layers_per_group=2), seed=seed, device=device),
    }
    out = {}
    for name, base in bases.items():
        record, _ = run_sequence(base, name, tasks, adapt, seed=seed, progress=progress)
        out[name] = record
    return out
