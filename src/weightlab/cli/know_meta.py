"""``weightlab know meta collect | train``: KNOWN's meta-dataset and meta-training."""

from __future__ import annotations

import argparse
from pathlib import Path

from weightlab.cli.common import (
    add_backend_flags,
    add_data_root,
    add_runtime,
    command_line,
    progress,
)
from weightlab.cli.common import add_common as common
from weightlab.errors import WeightlabError


def meta_parser(kn) -> None:
    """``know meta collect | train``."""
    meta = kn.add_parser(
        "meta",
        help="KNOWN meta-training: collect trajectories, train the hypermodels",
        description="Collect progressive-forgetting runs of small networks as meta rows (collect), then "
        "train KNOWN_{Conv,FC,Bias} on them with whole runs held out (train).",
    ).add_subparsers(dest="meta_command", required=True)
    mc = meta.add_parser(
        "collect",
        help="progressive-forgetting runs of small networks -> sharded meta rows",
        description="Draw run settings (architecture, data set, r, lr, batch size, optimiser) from "
        "the stated ranges, run them in parallel (a local Ray runtime, or worker "
        "processes) and append their rows to --out. Rerunning resumes.",
    )
    mc.add_argument("--runs", type=int, required=True, help="number of runs to draw")
    mc.add_argument("--start-id", type=int, default=0, help="first run id (append with a new range)")
    mc.add_argument("--archs", default=None, help="comma-separated architectures (default: all)")
    mc.add_argument("--datasets", default="digits", help="comma-separated data sets (default digits)")
    mc.add_argument(
        "--protocol",
        default="v1",
        choices=("v1", "faithful"),
        help="v1: a 3-epoch base, 6 stages; faithful: a converged, augmented base, 7 stages, D⁰ accuracy per stage",
    )
    mc.add_argument("--train-size", type=int, default=None, help="D⁰ samples per run (default: the protocol's)")
    mc.add_argument("--pretrain-epochs", type=int, default=None, help="base training epochs (default: the protocol's)")
    mc.add_argument("--eval-size", type=int, default=None, help="D⁰ test samples for the per-stage accuracy (faithful)")
    mc.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no run after this long (runs in flight finish; rerun to collect the rest)",
    )
    add_backend_flags(mc, default="auto", threads=False)  # every run uses one thread
    add_data_root(mc)
    common(mc)
    add_runtime(mc, precision=False)
    mt = meta.add_parser(
        "train",
        help="train KNOWN_{Conv,FC,Bias} on a meta-dataset, whole runs held out",
        description="Train the three KNOWN hypermodels on the rows of 'know meta collect' (whole runs held out "
        "for validation and test, early stopping on validation L1) and write them as safetensors with a model "
        "card and the L1 table against the baselines.",
    )
    mt.add_argument("--data", type=Path, required=True, help="folder written by 'know meta collect'")
    mt.add_argument("--epochs", type=int, default=20, help="meta-training epochs (default 20)")
    mt.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    mt.add_argument("--batch-size", type=int, default=4096, help="meta rows per batch (default 4096)")
    mt.add_argument(
        "--patience", type=int, default=3, help="stop after this many epochs without a better validation L1 (default 3)"
    )
    mt.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="fraction of the training-distribution runs held out for early stopping (default 0.2)",
    )
    mt.add_argument("--test-archs", default="", help="comma-separated architectures held out for testing")
    mt.add_argument("--test-datasets", default="", help="comma-separated data sets held out for testing")
    mt.add_argument("--max-rows", type=int, default=2_000_000, help="rows per hypermodel and split (subsampled)")
    mt.add_argument(
        "--max-rows-per-run",
        type=int,
        default=20_000,
        help="rows sampled from each run, so that large networks do not dominate (default 20000)",
    )
    mt.add_argument(
        "--input-convention",
        choices=("raw", "normalized"),
        default="normalized",
        help="normalized (default): each sequence shifted by its first value and scaled by its range, "
        "the residual scaled back; raw: the values as they are",
    )
    mt.add_argument(
        "--seq-len",
        type=int,
        default=5,
        help="history length S the hypermodels read, the last S of the rows' five stages (default 5, the "
        "paper's; fewer: the Table 6 ablation)",
    )
    common(mt)
    add_runtime(mt, precision=False)


def cmd_meta(args: argparse.Namespace) -> int:
    """``know meta collect | train``."""
    if args.out is None:
        raise WeightlabError(f"know meta {args.meta_command} needs --out FOLDER")
    return {"collect": _collect, "train": _train}[args.meta_command](args)


def _collect(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from weightlab.know.meta.collect import PROTOCOLS, collect, sample_specs

    ranges = PROTOCOLS[args.protocol]
    for field, value in (
        ("train_size", args.train_size),
        ("pretrain_epochs", args.pretrain_epochs),
        ("eval_size", args.eval_size),
    ):
        if value is not None:
            ranges = replace(ranges, **{field: value})

    specs = sample_specs(
        args.runs,
        seed=args.seed,
        start_id=args.start_id,
        archs=args.archs.split(",") if args.archs else None,
        datasets=args.datasets.split(","),
        ranges=ranges,
    )
    m = collect(
        args.out,
        specs,
        backend=args.backend,
        workers=args.workers,
        address=args.address,
        data_root=str(args.data_root) if args.data_root else None,
        command=command_line(args),
        progress=progress(args),
        device=args.device,
        gpus_per_job=args.gpus_per_run,
        time_budget=args.time_budget,
    )
    rows = sum(sum(r["rows"].values()) for r in m["runs"])
    size = sum(r["bytes"] for r in m["runs"])
    last = m["last_collection"]
    print(
        f"{len(m['runs'])} runs, {rows:,} rows, {size / 2**20:.1f} MiB in {args.out}; this call: "
        f"{last['runs']} runs, {last['rows']:,} rows in {last['seconds']:.1f} s "
        f"({last['rows'] / max(last['seconds'], 1e-9):,.0f} rows/s, {last['backend']}, {last['workers']} workers)"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from weightlab.know.meta.pipeline import l1_table, meta_train
    from weightlab.know.meta.train import MetaTrainConfig

    cfg = MetaTrainConfig(
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        input_convention=args.input_convention,
        seq_len=args.seq_len,
    )
    report = meta_train(
        args.data,
        args.out,
        cfg,
        val_fraction=args.val_fraction,
        test_archs=[a for a in args.test_archs.split(",") if a],
        test_datasets=[d for d in args.test_datasets.split(",") if d],
        max_rows=args.max_rows,
        max_rows_per_run=args.max_rows_per_run,
        command=command_line(args),
        progress=progress(args),
        device=args.device,
    )
    for key, title in (
        ("val_l1", "held-out runs of the training distribution"),
        ("test_l1", "held-out architectures and data sets"),
    ):
        if any(key in row for row in report["models"].values()):
            print(f"L1 of the predicted weight, {title}:\n" + "\n".join(l1_table(report, key)) + "\n")
    print(
        f"wrote KNOWN_{{Conv,FC,Bias}}.safetensors, training.json, MODEL_CARD.md, mini_test.safetensors and "
        f"loss.png to {args.out}"
    )
    return 0
