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
    progress,
    seed_list,
)
from weightlab.cli.common import add_common as common
from weightlab.cli.know_meta import cmd_meta, meta_parser
from weightlab.cli.know_trajectory import cmd_forget, cmd_pretrain, forget_parser, pretrain_parser
from weightlab.errors import WeightlabError

_PREDICT_FLAGS: dict = {}  # the predictor-option flags of 'know predict', made from the options dataclasses


def add_parsers(sub) -> None:
    """``know ...``: one parser per command, each built by its own function (the choices of predict and
    bench come from :mod:`weightlab.cli.catalogue`)."""
    kn = sub.add_parser(
        "know",
        help="KNOW: progressive forgetting, weight prediction (KNOWN and baselines), transfer",  # = _COMMAND_HELP
        description="KNOW: pretrain a base (pretrain), record its progressive forgetting (forget), predict "
        "knowledge-overflowed weights from the trajectory (predict), transfer them (transfer), run whole "
        "suites (bench) and meta-train KNOWN (meta collect, meta train).",
    ).add_subparsers(dest="know_command", required=True)
    pretrain_parser(kn)
    forget_parser(kn)
    _predict_parser(kn)
    _transfer_parser(kn)
    _bench_parser(kn)
    meta_parser(kn)


def _predict_parser(kn) -> None:
    """``know predict``."""
    p = kn.add_parser(
        "predict",
        help="predict knowledge-overflowed weights from a trajectory",
        description="Read a trajectory folder and write Θ̂^{-1..-steps} (x2, x4, x8 for r=0.5) as "
        "<method>_x<n>.safetensors, with <method>.json (what was touched, timings). "
        "Each predictor option has its flag (built from the predictors' options).",
    )
    _predict_options(p)


def _transfer_parser(kn) -> None:
    """``know transfer``."""
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
    t.add_argument("--seeds", type=seed_list, default=(42,), help="comma-separated seeds (default 42)")
    add_data_root(t)
    common(t)
    add_runtime(t)
    add_backend_flags(t)


def _bench_parser(kn) -> None:
    """``know bench``."""
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
    b.add_argument("--seeds", type=seed_list, default=None, help="comma-separated seeds (default: the suite's)")
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
    from weightlab.bench.reports.know import summarize
    from weightlab.data.tasks import SplitSizes, build_task
    from weightlab.io import check_resume, check_writable, file_sha256, read_json, write_json, write_text
    from weightlab.know.trajectory import Trajectory, stage_file
    from weightlab.know.transfer import TransferConfig, run_transfers
    from weightlab.machine import machine

    if args.out is None:
        raise WeightlabError("know transfer needs --out FOLDER for the results")
    traj = Trajectory.load(args.trajectory)
    seeds = list(args.seeds)
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
    # what the runs read: another trajectory, prediction, task or recipe in the same --out is refused (its
    # transfer.json is never overwritten); the same ones resume with the runs they are missing
    inputs = {
        "weights_sha256": {row[0]: file_sha256(row[3]) for row in rows},
        "task_sha256": task.fingerprint(),
        "config": {k: v for k, v in vars(cfg).items() if k != "seed"},
    }
    path = check_writable(args.out) / "transfer.json"
    results = {"machine": machine(), "trajectory": str(args.trajectory), "task": task.summary(), "runs": []}
    if path.is_file():
        kept = read_json(path)
        if not isinstance(kept, dict) or not isinstance(kept.get("runs"), list) or "inputs" not in kept:
            raise WeightlabError(f"{path}: not the results of 'weightlab know transfer'; use another --out")
        check_resume(path, kept, {"inputs": inputs}, "use another --out, or the same weights, task and options")
        results["runs"] = [r for r in kept["runs"] if (r.get("row"), r.get("seed")) in order]
    results["inputs"], results["config"] = inputs, vars(cfg)
    done = {(r["row"], r["seed"]) for r in results["runs"]}
    for record in run_transfers(
        rows,
        traj.meta["model"],
        task.train,
        task.test,
        cfg,
        seeds,
        done=done,
        progress=False,
        per_run_progress=progress(args),
        device=args.device,
        precision=args.precision,
        backend=backend_from_args(args),
    ):
        results["runs"].append(record)
        results["runs"].sort(key=lambda r: order[(r["row"], r["seed"])])  # rows, then seeds
        write_json(path, results)
    rate = f"lr chosen on validation from {list(cfg.lr_grid)}" if cfg.lr_grid else f"lr {cfg.lr:g}"
    lines = [
        f"# Transfer from {args.trajectory} to {task.name}",
        "",
        f"Each row's weights with a new head on {task.name} ({len(task.train)} training / {len(task.test)} test "
        f"images): {cfg.warmup_epochs} warm-up epochs (BatchNorm and head, lr {cfg.warmup_lr:g}), then "
        f"{cfg.epochs} epochs of the whole network ({rate}); transfer seeds {', '.join(map(str, seeds))}. "
        "Test accuracy (%), mean ± std over the seeds; the gain is paired with naive transfer (Θ⁰) "
        "on the same seed: mean ± std (p of a paired t-test)"
        + (
            ". With one seed there is no noise estimate: a gain of a few images is no evidence."
            if len(seeds) < 2
            else "."
        ),
        "",
        "| weights | seeds | accuracy | gain vs naive |",
        "|---|---|---|---|",
    ]
    for r in summarize(results):
        gain = "" if r["row"] == "naive" else f"{r['gain']:+.2f}"
        if r.get("paired"):
            gain = f"{r['paired']['mean']:+.2f} ± {r['paired']['std']:.2f} (p {r['paired']['p']:.2g})"
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
    seeds = args.seeds or None
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


COMMANDS = {
    "pretrain": cmd_pretrain,
    "forget": cmd_forget,
    "predict": cmd_predict,
    "transfer": cmd_transfer,
    "bench": cmd_bench,
    "meta": cmd_meta,
}
