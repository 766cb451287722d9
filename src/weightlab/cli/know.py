"""``weightlab know forget | predict | transfer | bench | meta``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from weightlab.cli.common import (
    add_backend_flags,
    add_data_root,
    add_runtime,
    backend_from_args,
    command_line,
    progress,
)
from weightlab.cli.common import add_common as common
from weightlab.errors import WeightlabError

_PREDICT_FLAGS: dict = {}  # the predictor-option flags of 'know predict', made from the options dataclasses


def add_parsers(sub) -> None:
    """``know ...`` (the choices of predict and bench come from :mod:`weightlab.cli.catalogue`)."""
    kn = sub.add_parser(
        "know",
        help="KNOW: progressive forgetting, weight prediction (KNOWN and baselines), transfer",  # = _COMMAND_HELP
        description="KNOW: pretrain a base (pretrain), record its progressive forgetting (forget), predict "
        "knowledge-overflowed weights from the trajectory (predict), transfer them (transfer), run whole "
        "suites (bench) and meta-train KNOWN (meta collect, meta train).",
    ).add_subparsers(dest="know_command", required=True)
    pt = kn.add_parser(
        "pretrain",
        help="train Θ⁰ on D⁰ to convergence (cosine decay, augmentation), resumably",
        description="The base a forgetting trajectory needs: train a fresh model on D⁰ with a learning "
        "rate decaying to zero (cosine) and train-time augmentation, evaluating a held-out validation "
        "split after every epoch. Writes base.safetensors, pretrain.json (history, whether the validation "
        "curve flattened) and a per-epoch checkpoint to --out; rerunning the same command resumes.",
    )
    pt.add_argument("--model", required=True, help="weightlab model (smallcnn, resnet20, ...), timm name or tv:NAME")
    pt.add_argument(
        "--data", required=True, help="D⁰ as DATASET[:CLASSES] (digits, mnist, fashion_mnist, cifar10, ...)"
    )
    pt.add_argument("--limit", type=int, default=None, help="training samples of D⁰ (default: all)")
    pt.add_argument("--val", type=int, default=1000, help="validation samples held out of the training split")
    pt.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    pt.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    pt.add_argument("--optimizer", default="adam", help="adam, adamw or sgd (default adam)")
    pt.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default 0)")
    pt.add_argument("--schedule", default="cosine", help="cosine (to zero) or constant (default cosine)")
    pt.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    pt.add_argument("--augment", default=None, help="crop (digits) or crop_flip (natural images); default none")
    pt.add_argument("--input-size", default=None, help="C,H,W for models that take it (e.g. 1,28,28 for MNIST)")
    pt.add_argument(
        "--curriculum",
        type=int,
        default=0,
        help="incremental pretraining: split the epochs over this many nested subsets of D⁰ (ratio --ratio, "
        "smallest first), each epoch |D⁰| samples, so the run keeps the plain base's steps and schedule "
        "(default 0: plain pretraining)",
    )
    pt.add_argument("--ratio", type=float, default=0.5, help="the curriculum's subset ratio r (default 0.5)")
    add_data_root(pt)
    common(pt)
    add_runtime(pt)

    f = kn.add_parser(
        "forget",
        help="fine-tune on nested, ever smaller subsets and record the trajectory",
        description="Progressive forgetting: fine-tune the model on D^1 ⊂ D^0, D^2 ⊂ D^1, ... "
        "(ratio r) and save every stage (safetensors) and a manifest to --out. "
        "Rerunning the same command resumes at the next stage.",
    )
    f.add_argument("--model", required=True, help="weightlab model (resnet20, smallcnn, ...), timm name or tv:NAME")
    f.add_argument("--weights", type=Path, default=None, help="Θ⁰ weights (.safetensors or weights-only .pt)")
    f.add_argument("--no-pretrained", action="store_true", help="start from a random init (tests only)")
    f.add_argument(
        "--data",
        required=True,
        help="D⁰ as DATASET[:CLASSES] (digits, mnist, fashion_mnist, cifar10, imagefolder:PATH)",
    )
    f.add_argument("--limit", type=int, default=None, help="use a seeded random subset of D⁰ of this size")
    f.add_argument(
        "--val",
        type=int,
        default=0,
        help="samples held out of the training split first (give 'know pretrain''s --val, --limit and --seed: "
        "the same D⁰)",
    )
    f.add_argument("--eval-limit", type=int, default=2000, help="test samples to track accuracy per stage")
    f.add_argument("--ratio", type=float, default=0.5, help="subset ratio r (default 0.5)")
    f.add_argument("--stages", type=int, default=5, help="stages S including Θ⁰ (default 5)")
    f.add_argument("--epochs", type=int, default=1, help="epochs per stage (default 1)")
    f.add_argument("--optimizer", default="adam", help="adam, adamw or sgd (default adam)")
    f.add_argument("--lr", type=float, default=1e-3, help="learning rate of every stage (default 1e-3, the authors')")
    f.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default 0)")
    f.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    f.add_argument("--class-balanced", action="store_true", help="keep the same fraction of every class")
    f.add_argument(
        "--full-data-pass",
        action="store_true",
        help="first fine-tune one pass on all of D⁰ (the authors' script), so Θ⁰ shares the optimiser",
    )
    f.add_argument("--augment", default=None, help="the pretraining's augmentation in every stage (crop or crop_flip)")
    f.add_argument("--input-size", default=None, help="C,H,W for models that take it (as given to 'know pretrain')")
    add_data_root(f)
    common(f)
    add_runtime(f)

    p = kn.add_parser(
        "predict",
        help="predict knowledge-overflowed weights from a trajectory",
        description="Read a trajectory folder and write Θ̂^{-1..-steps} (x2, x4, x8 for r=0.5) as "
        "<method>_x<n>.safetensors, with <method>.json (what was touched, timings). "
        "Each predictor option has its flag (built from the predictors' options).",
    )
    _predict_options(p)

    t = kn.add_parser(
        "transfer",
        help="fine-tune Θ⁰ and predicted weights on a downstream task (two phases)",
        description="Naive transfer from the trajectory's Θ⁰ and transfer from every predicted "
        "weights file, with a new head: warm-up (only BatchNorm and head train), then "
        "everything with cosine decay. Reports mean ± std over seeds and the gain.",
    )
    t.add_argument(
        "--trajectory",
        type=Path,
        required=True,
        help="folder written by 'weightlab know forget' (its Θ⁰ is the naive row)",
    )
    t.add_argument(
        "--predictions",
        type=Path,
        nargs="*",
        default=[],
        help="predicted weights files or folders of them (from 'know predict')",
    )
    t.add_argument("--task", required=True, help="downstream DATASET[:CLASSES]")
    t.add_argument(
        "--train-limit", type=int, default=None, help="seeded random subset of the task's training split (default all)"
    )
    t.add_argument("--test-limit", type=int, default=None, help="seeded random subset of the test split (default all)")
    t.add_argument(
        "--warmup-epochs",
        type=int,
        default=10,
        help="phase 1: epochs training only BatchNorm and the head (default 10)",
    )
    t.add_argument(
        "--epochs", type=int, default=100, help="phase 2: epochs training everything, cosine decay (default 100)"
    )
    t.add_argument("--warmup-lr", type=float, default=1e-3, help="phase 1 learning rate (default 1e-3)")
    t.add_argument("--lr", type=float, default=4e-4, help="phase 2 peak learning rate (default 4e-4)")
    _lr_grid_flag(t)
    t.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    t.add_argument("--seeds", default="42", help="comma-separated seeds (default 42)")
    add_data_root(t)
    common(t)
    add_runtime(t)
    add_backend_flags(t)

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

    b = kn.add_parser(
        "bench",
        help="run a KNOW transfer suite (Table 1 layout), resumable",
        description="Forgetting, every predictor at x2/x4/x8, incremental pretraining, and transfer "
        "runs per seed; writes results.json, results.md and trajectory_pca.png to --out.",
    )
    _bench_options(b)


def _predict_options(p) -> None:
    from weightlab.cli.catalogue import load
    from weightlab.registry import add_flag_specs

    names = load()
    PREDICTORS, DEFAULT_KINDS, PREDICTABLE = names["predictors"], names["default_kinds"], names["predictable"]

    p.add_argument("--trajectory", type=Path, required=True, help="folder written by 'weightlab know forget'")
    p.add_argument("--method", default="known", help=f"one of {', '.join(PREDICTORS)} (default known)")
    p.add_argument("--steps", type=int, default=1, help="predict steps 1..N (default 1; 3 gives x2, x4, x8)")
    p.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help=f"parameter kinds to predict, from {', '.join(PREDICTABLE)} (default {','.join(DEFAULT_KINDS)})",
    )
    _PREDICT_FLAGS.update(add_flag_specs(p, names["predictor_flags"]))
    common(p)


def _bench_options(b) -> None:
    from weightlab.cli.catalogue import load

    SUITES = load()["know_suites"]

    b.add_argument("--suite", required=True, choices=sorted(SUITES), help="the suite to run (see the README's table)")
    b.add_argument("--seeds", default=None, help="comma-separated seeds (default: the suite's)")
    b.add_argument(
        "--known-weights",
        type=Path,
        default=None,
        help="folder of KNOWN weights for the 'known' row (default: the shipped ones), e.g. a candidate",
    )
    _lr_grid_flag(b)
    b.add_argument(
        "--data-root", type=Path, default=None, help="data folder (default $WEIGHTLAB_DATA or ../shared/data)"
    )
    common(b)
    add_runtime(b)
    add_backend_flags(b)


def _lr_grid_flag(p) -> None:
    p.add_argument(
        "--lr-grid",
        default=None,
        help="comma-separated learning rates: each run chooses its rate on a validation split of the "
        "downstream training data (a fifth), then trains on all of it; the test split is read once",
    )


def _lr_grid(args) -> tuple[float, ...] | None:
    if not args.lr_grid:
        return None
    try:
        return tuple(float(v) for v in args.lr_grid.split(",") if v.strip())
    except ValueError:
        raise WeightlabError(f"--lr-grid must be comma-separated numbers, got '{args.lr_grid}'") from None


def _model_kwargs(args: argparse.Namespace) -> dict:
    """``--input-size C,H,W`` as a model keyword (for the models that take it)."""
    if not getattr(args, "input_size", None):
        return {}
    try:
        size = tuple(int(v) for v in args.input_size.split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise WeightlabError(f"--input-size must be C,H,W (e.g. 1,28,28), got '{args.input_size}'")
    return {"input_size": size}


def cmd_pretrain(args: argparse.Namespace) -> int:
    from weightlab.data.tasks import SplitSizes, build_task
    from weightlab.know.pretrain import WEIGHTS, PretrainConfig, pretrain
    from weightlab.models import create_model

    if args.out is None:
        raise WeightlabError("know pretrain needs --out FOLDER for the weights")
    kwargs = _model_kwargs(args)
    cfg = PretrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        batch_size=args.batch_size,
        augment=args.augment,
        seed=args.seed,
        curriculum=args.curriculum,
        curriculum_ratio=args.ratio,
        curriculum_seed=args.seed,
    )
    cfg.validate()
    task = build_task(
        args.data, args.data_root, SplitSizes(train=args.limit, val=args.val, test=0), data_seed=args.seed
    )
    import torch

    torch.manual_seed(args.seed)
    model = create_model(args.model, num_classes=task.num_classes, **kwargs)
    meta = pretrain(
        model,
        task.train,
        args.out,
        cfg,
        val=task.val if len(task.val) else None,
        data_info=task.summary(),
        progress=progress(args),
        device=args.device,
        precision=args.precision,
    )
    print("| epoch | train loss | val accuracy |\n|---|---|---|")
    for h in meta["history"]:
        print(f"| {h['epoch']} | {h['train_loss']:.4f} | {h.get('val_accuracy', float('nan')):.2f} |")
    state = {True: "flattened", False: "still changing", None: "unknown (too few epochs or no validation)"}
    print(f"\nvalidation curve: {state[meta.get('converged')]}")
    print(f"wrote {Path(args.out) / WEIGHTS} and pretrain.json")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from weightlab.data.tasks import SplitSizes, build_task
    from weightlab.know.forgetting import ForgetConfig, run_forgetting
    from weightlab.models import create_model

    if args.out is None:
        raise WeightlabError("know forget needs --out FOLDER for the trajectory")
    task = build_task(
        args.data, args.data_root, SplitSizes(train=args.limit, val=args.val, test=args.eval_limit), data_seed=args.seed
    )
    model = create_model(
        args.model,
        pretrained=not args.no_pretrained and args.weights is None,
        weights=args.weights,
        # weights of D⁰ have D⁰'s classes (a mismatch is a shape error naming the head); the registry's
        # pretrained weights bring their own
        num_classes=task.num_classes if args.weights or args.no_pretrained else None,
        **_model_kwargs(args),
    )
    if model.weightlab_cfg.num_classes != task.num_classes:
        raise WeightlabError(
            f"the model has {model.weightlab_cfg.num_classes} classes but {args.data} has "
            f"{task.num_classes}: Θ⁰ must be a model trained on D⁰"
        )
    cfg = ForgetConfig(
        ratio=args.ratio,
        stages=args.stages,
        epochs=args.epochs,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        seed=args.seed,
        class_balanced=args.class_balanced,
        full_data_pass=args.full_data_pass,
        augment=args.augment,
    )
    traj = run_forgetting(
        model,
        task.train,
        args.out,
        cfg,
        eval_data=task.test,
        data_info=task.summary(),
        progress=progress(args),
        device=args.device,
        precision=args.precision,
    )
    print("| stage | samples | test accuracy |\n|---|---|---|")
    for s in traj.meta["stages"]:
        print(f"| {s['stage']} | {s['subset_size']} | {s.get('eval_accuracy', float('nan')):.2f} |")
    check = traj.meta.get("forgetting") or {}
    if check.get("forgets") is False:
        print(
            f"\nforgetting: no -- D⁰ test accuracy does not fall along this trajectory "
            f"({check['accuracy'][0]:.2f} -> {check['accuracy'][-1]:.2f}); it does not test KNOW's hypothesis"
        )
    print(f"\nwrote {traj.num_stages} stages and manifest.json to {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from weightlab.io import check_resume, check_writable, file_sha256, read_json, save_tensors, write_json
    from weightlab.know.predictors import get_predictor, resolve_predictor
    from weightlab.know.trajectory import MANIFEST, Trajectory, scale_label
    from weightlab.registry import options_from_flags

    if args.out is None:
        raise WeightlabError("know predict needs --out FOLDER for the predicted weights")
    if args.steps < 1:
        raise WeightlabError(f"--steps must be at least 1, got {args.steps}")
    traj = Trajectory.load(args.trajectory)
    name = resolve_predictor(args.method)
    options = options_from_flags(args, _PREDICT_FLAGS, name)
    predictor = get_predictor(name, kinds=args.kinds, **options)
    lam = predictor.options().get("lam", options.get("lam"))
    if isinstance(lam, (int, float)) and lam < 0:
        print(
            f"weightlab: warning: lam = {lam} < 0 reverses the extrapolation (the prediction moves toward the "
            "forgetting, not away from it)",
            file=sys.stderr,
        )
    steps = [k for k in range(1, args.steps + 1) if predictor.unsupported(k) is None]
    skipped = {k: predictor.unsupported(k) for k in range(1, args.steps + 1) if predictor.unsupported(k)}
    for k, why in skipped.items():
        print(f"{predictor.name}: step {k} skipped: {why}")
    if not steps:
        raise WeightlabError(f"{predictor.name}: none of steps 1..{args.steps} can be predicted")
    # one predictor's files in a folder come from one model: <method>.json records what made them, and a
    # run with another trajectory or other options into the same folder is refused rather than mixed in
    inputs = dict(
        options=json.loads(json.dumps(predictor.options(), default=str)),
        trajectory_sha256=file_sha256(Path(args.trajectory) / MANIFEST),
    )
    record = args.out / f"{predictor.name}.json"
    if record.is_file():
        check_resume(
            args.out,
            {k: v for k, v in read_json(record).items() if k == "inputs"},
            {"inputs": inputs},
            f"use another --out (its {predictor.name}_*.safetensors are another model's)",
        )
    check_writable(args.out)
    start = time.perf_counter()
    states = predictor.predict_steps(traj, steps)
    seconds = time.perf_counter() - start
    ratio = traj.meta.get("config", {}).get("ratio", 0.5)
    files = {}
    for k, state in states.items():
        f = args.out / f"{predictor.name}_{scale_label(ratio, k)}.safetensors"
        save_tensors(f, state, metadata={"method": predictor.name, "step": str(k), "trajectory": str(args.trajectory)})
        files[k] = f.name
    described = predictor.describe(traj)
    info = {
        **described,
        "steps": steps,
        "skipped": skipped,
        "files": files,
        "seconds": seconds,
        "seconds_per_parameter": seconds / max(1, sum(described["touched"].values())),
        "trajectory": str(args.trajectory),
        "inputs": inputs,
    }
    write_json(record, info)
    print(f"{predictor.name}: touched {info['touched']} (untouched {info['untouched']}), {seconds:.2f} s")
    print(f"wrote {', '.join(files.values())} to {args.out}")
    return 0


def _weight_files(items: list[Path]) -> list[Path]:
    files = []
    for p in items:
        if p.is_dir():
            files += sorted(p.glob("*.safetensors"))
        elif p.is_file():
            files.append(p)
        else:
            raise WeightlabError(f"{p}: no such predictions file or folder")
    return files


def cmd_transfer(args: argparse.Namespace) -> int:
    from weightlab.bench.know import summarize
    from weightlab.data.tasks import SplitSizes, build_task
    from weightlab.io import write_json, write_text
    from weightlab.know.trajectory import Trajectory, stage_file
    from weightlab.know.transfer import TransferConfig, run_transfers
    from weightlab.machine import machine

    if args.out is None:
        raise WeightlabError("know transfer needs --out FOLDER for the results")
    traj = Trajectory.load(args.trajectory)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise WeightlabError(f"--seeds must be comma-separated integers, got '{args.seeds}'") from None
    task = build_task(args.task, args.data_root, SplitSizes(train=args.train_limit, val=0, test=args.test_limit))
    cfg = TransferConfig(
        warmup_epochs=args.warmup_epochs,
        epochs=args.epochs,
        warmup_lr=args.warmup_lr,
        lr=args.lr,
        batch_size=args.batch_size,
        lr_grid=_lr_grid(args),
    )
    rows = [("naive", "Naive transfer", 0, args.trajectory / stage_file(0))]
    rows += [(f.stem, f.stem, 1, f) for f in _weight_files(args.predictions)]
    order = {(row[0], seed): n for n, (row, seed) in enumerate((r, s) for r in rows for s in seeds)}
    results = {
        "machine": machine(),
        "trajectory": str(args.trajectory),
        "task": task.summary(),
        "config": vars(cfg),
        "runs": [],
    }
    for record in run_transfers(
        rows,
        traj.meta["model"],
        task.train,
        task.test,
        cfg,
        seeds,
        progress=False,
        per_run_progress=progress(args),
        device=args.device,
        precision=args.precision,
        backend=backend_from_args(args),
    ):
        results["runs"].append(record)
        results["runs"].sort(key=lambda r: order[(r["row"], r["seed"])])  # rows, then seeds
        write_json(args.out / "transfer.json", results)
    lines = ["| weights | seeds | accuracy | gain vs naive |", "|---|---|---|---|"]
    for r in summarize(results):
        gain = "" if r["row"] == "naive" else f"{r['gain']:+.2f}"
        lines.append(f"| {r['label']} | {r['seeds']} | {r['mean']:.2f} ± {r['std']:.2f} | {gain} |")
    write_text(args.out / "transfer.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from weightlab import paths
    from weightlab.bench.know import get_suite, run_suite

    suite = get_suite(args.suite)
    if args.lr_grid:
        suite = replace(suite, transfer=replace(suite.transfer, lr_grid=_lr_grid(args)))
    if args.known_weights is not None:  # run_suite says so if it is not a folder
        suite = replace(suite, known_weights=str(args.known_weights.resolve()))
    if suite.needs_shared and args.data_root is None and paths.data_root() is None:
        raise WeightlabError(f"suite '{args.suite}' needs its data: pass --data-root DIR (or set WEIGHTLAB_SHARED)")
    out = args.out or Path("know-bench") / suite.name
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    except ValueError:
        raise WeightlabError(f"--seeds must be comma-separated integers, got '{args.seeds}'") from None
    run_suite(
        suite,
        out,
        progress=progress(args),
        seeds=seeds,
        device=args.device,
        precision=args.precision,
        backend=backend_from_args(args),
        data_root=args.data_root,
    )
    print((out / "results.md").read_text())
    return 0


def cmd_meta(args: argparse.Namespace) -> int:
    if args.out is None:
        raise WeightlabError(f"know meta {args.meta_command} needs --out FOLDER")
    if args.meta_command == "collect":
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


COMMANDS = {
    "pretrain": cmd_pretrain,
    "forget": cmd_forget,
    "predict": cmd_predict,
    "transfer": cmd_transfer,
    "bench": cmd_bench,
    "meta": cmd_meta,
}
