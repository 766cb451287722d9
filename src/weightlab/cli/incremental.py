"""``weightlab recast adapt | evaluate | bench``: learn tasks on a RECAST (or plain) base, check saved
tasks, run benchmark suites."""

from __future__ import annotations

import argparse
from pathlib import Path

from weightlab.cli.common import (
    add_backend_flags,
    add_common,
    add_data_root,
    add_runtime,
    backend_from_args,
    command_line,
    progress,
    seed_list,
    templates_arg,
)
from weightlab.errors import WeightlabError


def add_parsers(rc) -> None:
    """``recast adapt|evaluate|bench`` (the choices of adapt and bench come from :mod:`weightlab.cli.catalogue`)."""
    a = rc.add_parser(
        "adapt",
        help="learn one task or a sequence: per-task coefficients/adapters + heads",
        description="Build (or load with --base) the shared base, then learn each task in order, "
        "training only the method's task tensors and a new head; every task is saved "
        "as its own artifact under OUT/tasks/. Rerunning resumes at the first task "
        "not yet saved.",
    )
    _adapt_options(a)

    e = rc.add_parser(
        "evaluate",
        help="test saved task artifacts on their test splits",
        description="Load a base and task artifacts, re-test every task on its test split, and "
        "compare with the accuracy recorded when it was learnt.",
    )
    e.add_argument("--base", type=Path, required=True, help="the base folder (OUT/base of 'adapt')")
    e.add_argument(
        "--task",
        type=Path,
        action="append",
        default=None,
        help="a task folder (repeatable; default: every task beside the base)",
    )
    add_data_root(e)
    add_common(e)
    add_runtime(e)

    b = rc.add_parser(
        "bench",
        help="run a benchmark suite (JSON, Markdown table, PNG plots; resumable)",
        description="Run every (method, seed) of a task-incremental suite -- fair suites first choose each "
        "row's learning rate on validation -- and write results.json, results.md, paper_table.md and plots to "
        "--out. Rerunning resumes; --merge adds the runs of the same suite run elsewhere.",
    )
    _bench_options(b)


def _adapt_options(a) -> None:
    from weightlab.cli.catalogue import load

    names = load()

    a.add_argument(
        "--tasks",
        required=True,
        help=f"a sequence ({', '.join(names['sequences'])}) or task specs "
        "DATASET[:CLASSES], comma-separated (e.g. mnist:0-4,cifar10)",
    )
    a.add_argument(
        "--method", default="recast", help=f"one of {', '.join(names['methods'])}; options as lora:r=4 (default recast)"
    )
    a.add_argument(
        "--model", default=None, help="backbone for a new base (weightlab, timm or tv: name, or package.module:factory)"
    )
    a.add_argument("--weights", type=Path, default=None, help="local backbone weights")
    a.add_argument("--no-pretrained", action="store_true", help="random-init backbone (tests)")
    a.add_argument("--base", type=Path, default=None, help="an existing base folder (OUT/base of an earlier run)")
    a.add_argument(
        "--templates", type=templates_arg, default="auto", help="RECAST templates per bank n, or 'auto' (default auto)"
    )
    a.add_argument("--coef-sets", type=int, default=None, help="RECAST coefficient sets K")
    a.add_argument("--layers-per-group", type=int, default=2, help="RECAST layers per group (default 2)")
    a.add_argument(
        "--recast-base",
        choices=("closed_form", "recipe", "regauged"),
        default="closed_form",
        help="how a new RECAST base is fitted: the exact closed form (default), the authors' recipe, or the "
        "closed form re-gauged to the recipe's template scale (same weights, larger templates)",
    )
    a.add_argument("--epochs", type=int, default=100, help="epochs per task (default 100, the authors')")
    a.add_argument(
        "--lr", type=float, default=None, help="learning rate of the task's parameters (default 2e-3, the authors')"
    )
    a.add_argument("--coef-lr", type=float, default=None, help="RECAST coefficients' learning rate (default --lr)")
    a.add_argument("--weight-decay", type=float, default=1e-6, help="AdamW weight decay (default 1e-6)")
    a.add_argument(
        "--lr-step",
        type=int,
        default=33,
        help="StepLR step in epochs (default 33, the authors'; 0: a third of the epochs)",
    )
    a.add_argument("--batch-size", type=int, default=None, help="default 64 (CNN) / 128 (ViT)")
    a.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (default 1.0; 0: off)")
    a.add_argument("--select", choices=("val", "last"), default="val", help="epoch selection (default val)")
    a.add_argument(
        "--compile", action="store_true", help="train through torch.compile(model) (the first epoch compiles)"
    )
    a.add_argument(
        "--bn",
        choices=("task", "frozen"),
        default="task",
        help="BatchNorm statistics: updated and stored per task (default) or frozen",
    )
    _sizes(a)
    add_data_root(a)
    add_common(a)
    add_runtime(a)


def _bench_options(b) -> None:
    from weightlab.cli.catalogue import load

    SUITES = load()["suites"]

    b.add_argument("--suite", required=True, choices=sorted(SUITES), help="the suite to run (see the README's table)")
    b.add_argument("--methods", default=None, help="comma-separated subset of the suite's methods")
    b.add_argument(
        "--seeds", type=seed_list, default=None, help="comma-separated seeds (default the authors' 42,1998,3142592)"
    )
    b.add_argument("--weights", type=Path, default=None, help="local backbone weights (e.g. for the ViT suite)")
    b.add_argument(
        "--scale",
        choices=("cpu", "full"),
        default="cpu",
        help="cpu: the suite as defined (sized for 2 cores); full: its full-size definition (whole data sets, "
        "the authors' 100 epochs; a GPU run, --device cuda), for the suites that have one",
    )
    b.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild results.md and the plots from OUT/results.json (e.g. of an interrupted run)",
    )
    b.add_argument(
        "--merge",
        type=Path,
        default=None,
        metavar="DIR",
        help="add the runs of DIR/results.json (the same suite run by another worker) to OUT, then report",
    )
    add_data_root(b)
    add_common(b)
    add_runtime(b)
    add_backend_flags(b)


def _sizes(p) -> None:
    p.add_argument("--train-size", type=int, default=None, help="training samples per task (default all)")
    p.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="validation samples per task, carved from the training split (default a fifth)",
    )
    p.add_argument("--test-size", type=int, default=None, help="test samples per task (default all)")


def cmd_adapt(args: argparse.Namespace) -> int:
    from weightlab.data.tasks import SplitSizes, build_sequence
    from weightlab.incremental import AdaptConfig, TaskModel, parse_method, save_base
    from weightlab.incremental.artifact import load_base
    from weightlab.incremental.sequence import learn_sequence
    from weightlab.io import check_writable, file_sha256, read_json, refuse_changed, write_json
    from weightlab.recast.pipeline import build_bases

    if args.out is None:
        raise WeightlabError("--out DIR is required (the base and task artifacts are written there)")
    spec = parse_method(args.method)
    if spec.owns_rates and (args.lr is not None or args.coef_lr is not None):
        raise WeightlabError(
            f"{spec.name} sets its own learning rates (its options, e.g. {spec.adapter}:mask_lr=...,head_lr=...,"
            "coef_lr=...): --lr / --coef-lr would be ignored, so they are refused"
        )
    cfg = AdaptConfig(
        epochs=args.epochs,
        lr=2e-3 if args.lr is None else args.lr,
        coef_lr=args.coef_lr,
        weight_decay=args.weight_decay,
        lr_step=args.lr_step or None,
        batch_size=args.batch_size,
        clip_norm=args.clip or None,
        select=args.select,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
    )
    sizes = SplitSizes(args.train_size, args.val_size, args.test_size)
    tasks = build_sequence(args.tasks, args.data_root, sizes)
    base_dir = args.base or args.out / "base"
    recast_options = dict(
        templates=args.templates,
        coef_sets=args.coef_sets,
        layers_per_group=args.layers_per_group,
        base=args.recast_base,
    )
    # what the base in --out is built from: a rerun into the same --out with other options is refused
    base_inputs = dict(
        model=args.model,
        weights_sha256=file_sha256(args.weights) if args.weights and Path(args.weights).is_file() else None,
        pretrained=not args.no_pretrained,
        recast=recast_options if spec.recast else None,
        seed=args.seed,
    )
    # a RECAST model from 'recast mimic' (or save_recast) as --base becomes this run's base, kept in OUT/base
    fitted = _fitted_recast_dir(args.base) if args.base is not None else None
    if fitted is not None:
        base_dir = args.out / "base"
        base_inputs = dict(recast_model=str(fitted), weights_sha256=file_sha256(fitted / "model.safetensors"))
    new_base = False
    if (base_dir / "base.json").is_file():
        if args.base is None or fitted is not None:  # a base this --out built: resumed with the same inputs only
            stored = read_json(base_dir / "base.json").get("inputs")
            if stored is not None:
                refuse_changed(base_dir, stored, base_inputs, "use another --out, or the same options to resume")
        base = load_base(base_dir)
    elif fitted is not None:
        if not spec.recast:
            raise WeightlabError(
                f"{args.base} is a RECAST model: learn tasks on it with a RECAST method (--method recast or "
                f"recast+...), not {spec.name}"
            )
        from weightlab.recast.serialization import load_recast

        check_writable(args.out)
        base, new_base = load_recast(fitted), True
    elif args.base is not None:
        raise WeightlabError(
            f"{args.base}: not a base: give the base folder of an earlier 'recast adapt' (OUT/base, with base.json) "
            "or a RECAST model from 'recast mimic' (its --out folder, or the model folder in it)"
        )
    else:
        if not args.model:
            raise WeightlabError("--model is required to build a new base (or pass --base DIR)")
        check_writable(args.out)
        plain, rbase = build_bases(
            args.model,
            str(args.weights) if args.weights else None,
            recast_options,
            need_recast=spec.recast,
            seed=args.seed,
            pretrained=not args.no_pretrained,
            device=args.device,
        )
        base = rbase if spec.recast else plain
        new_base = True
    tm = TaskModel.from_base(base, spec, bn=args.bn, seed=args.seed)
    _refuse_foreign_tasks(args.out / "tasks", tm.base_hash)
    if new_base:  # written once nothing refuses the run
        save_base(base, base_dir, inputs=base_inputs)
    result = learn_sequence(
        tm, tasks, cfg, seed=args.seed, out=args.out, sizes=sizes, progress=progress(args), log=print
    )
    # zero forgetting: every task re-tested after the whole sequence equals its accuracy when learnt
    ok = result.zero_forgetting
    final = result.final_accuracy
    counts = result.counts[0]
    summary = dict(
        method=spec.name,
        base=str(base_dir),
        base_hash=tm.base_hash,
        tasks=result.tasks,
        accuracy_when_learnt=result.accuracy_when_learnt,
        accuracy_after_all=final,
        zero_forgetting=ok,
        counts=counts,
    )
    write_json(args.out / "summary.json", summary)
    print(
        f"\n{spec.name}: {counts['trainable_per_task']:,} trainable numbers per task + head; "
        f"{counts['bytes_per_task'] / 1024:.1f} KiB per task next to a {counts['backbone_bytes'] / 1024:.0f} KiB "
        f"backbone; average test accuracy {sum(final) / len(final):.2f}%; zero forgetting: "
        f"{'yes' if ok else 'NO'}"
    )
    return 0 if ok else 1


def _fitted_recast_dir(path: Path) -> Path | None:
    """The RECAST model folder (``recast_config.json`` + ``model.safetensors``) that ``--base`` names: the
    folder itself, its ``model.safetensors``, or the one model folder inside a 'recast mimic' output; None when
    ``path`` is none of these (a base folder, or nothing)."""
    from weightlab.recast.serialization import CONFIG_FILE

    path = Path(path)
    if path.is_file() and path.name == "model.safetensors":
        path = path.parent
    if (path / CONFIG_FILE).is_file() and not (path / "base.json").is_file():
        return path
    inside = sorted(p.parent for p in path.glob(f"*/{CONFIG_FILE}")) if path.is_dir() else []
    if len(inside) == 1 and not (path / "base.json").is_file():
        return inside[0]
    if len(inside) > 1:
        raise WeightlabError(
            f"{path} holds {len(inside)} RECAST models ({', '.join(p.name for p in inside)}): name one with --base"
        )
    return None


def _refuse_foreign_tasks(tasks_dir: Path, base_hash: str) -> None:
    """Refuse, before any training, an output folder whose tasks were learnt on another base."""
    from weightlab.incremental.artifact import read_task_meta

    for meta_file in sorted(tasks_dir.glob("*/task.json")):
        try:
            other = read_task_meta(meta_file.parent).get("base_hash")
        except WeightlabError:
            continue  # not a task: learn_sequence names it when it gets there
        if isinstance(other, str) and other != base_hash:
            raise WeightlabError(
                f"{meta_file.parent}: task learnt on base {other[:12]}, not on this run's base {base_hash[:12]}: "
                "learn new tasks on another base into another --out"
            )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from weightlab.data.tasks import SplitSizes, build_task
    from weightlab.engine import place
    from weightlab.incremental import load_task_model
    from weightlab.incremental.artifact import read_task_meta
    from weightlab.incremental.learner import accuracy

    task_dirs = args.task or sorted(p.parent for p in (args.base.parent / "tasks").glob("*/task.json"))
    if not task_dirs:
        raise WeightlabError(f"no task artifacts given and none under {args.base.parent / 'tasks'}")
    tm = load_task_model(args.base, task_dirs, seed=args.seed)
    place(tm, args.device)
    print("| task | method | test acc now | when learnt | trainable / task | KiB / task |\n|---|---|---|---|---|---|")
    rows = []
    for d in task_dirs:
        meta = read_task_meta(d)
        data = meta["metrics"].get("data")
        if not data:
            raise WeightlabError(f"{d}: the artifact does not record its data split; cannot re-test it")
        task = build_task(data["spec"], args.data_root, SplitSizes(**data["sizes"]), data["data_seed"])
        acc = accuracy(tm, meta["name"], task.test, precision=args.precision)
        c = meta["counts"]
        print(
            f"| {meta['name']} | {meta['method']['name']} | {acc:.2f} "
            f"| {meta['metrics'].get('test_accuracy', float('nan')):.2f} "
            f"| {c['trainable_per_task']:,} | {c['bytes_per_task'] / 1024:.1f} |"
        )
        rows.append(
            dict(
                task=meta["name"],
                method=meta["method"]["name"],
                test_accuracy=acc,
                when_learnt=meta["metrics"].get("test_accuracy"),
            )
        )
    if args.out is not None:  # the table as JSON
        from weightlab.io import write_json

        write_json(Path(args.out) / "evaluate.json", dict(base=str(args.base), tasks=rows))
        print(f"wrote {Path(args.out) / 'evaluate.json'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from weightlab.bench.incremental import get_suite, merge_results, report_only, run_suite
    from weightlab.incremental.baselines import is_baseline

    suite = get_suite(args.suite).at_scale(args.scale)
    if args.weights:
        suite = replace(suite, weights=str(args.weights))
    out = args.out or Path("runs") / "bench" / (suite.name + ("-full" if args.scale == "full" else ""))
    if args.merge:
        print(f"weightlab: {merge_results(out, args.merge)} runs added from {args.merge}")
    elif args.report_only:
        report_only(out)
    if args.merge or args.report_only:
        print((Path(out) / "results.md").read_text())
        return 0
    payload = run_suite(
        suite,
        out,
        data_root=args.data_root,
        progress=progress(args),
        methods=args.methods.split(",") if args.methods else None,
        seeds=args.seeds,
        command=command_line(args),
        device=args.device,
        precision=args.precision,
        backend=backend_from_args(args),
    )
    print((Path(out) / "results.md").read_text())
    # per-task methods must not forget; continual-learning baselines share a model and may
    bad = [r["name"] for r in payload["summary"] if not r["zero_forgetting"] and not is_baseline(r["method"])]
    if bad:
        print(f"weightlab: zero-forgetting check FAILED for {', '.join(bad)}")
        return 1
    return 0
