"""The ``weightlab`` command line: ``weightlab quickstart``, ``weightlab recast mimic|plan|adapt|evaluate|bench``,
``weightlab know forget|predict|transfer|bench|meta``.

Thin commands over library calls: this package parses options, calls the library and prints; nothing
outside it imports it. Every subcommand takes ``--seed`` and ``--out DIR`` and writes JSON next to a
Markdown table. Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from weightlab.cli.common import add_common, add_runtime, apply_runtime, templates_arg, wants
from weightlab.errors import WeightlabError

#: the commands and their one-line help (the stubs of a parser built for one command)
_COMMAND_HELP = {
    "quickstart": "a real end-to-end run on scikit-learn digits (or the shared data)",
    "recast": "RECAST: template banks, Neural Mimicry",
    "know": "KNOW: progressive forgetting, weight prediction (KNOWN and baselines), transfer",
}


def build_parser(only: tuple[str, ...] | str | None = None) -> argparse.ArgumentParser:
    """The CLI parser. With ``only`` (the command path typed, e.g. ``("recast", "bench")``; a string is a
    one-word path; ``()`` none) a command off that path is a stub with its help line and no options, so
    that ``--help`` and parsing import only what the typed command needs (no command's help imports torch)."""
    from weightlab.cli.ranges import OneLineParser

    parser = OneLineParser(prog="weightlab", description="Decompose, adapt and predict neural-network weights.")
    parser.add_argument("--version", action="version", version=f"weightlab {__import__('weightlab').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    if isinstance(only, str):
        only = (only,) if only else ()
    for name, line in _COMMAND_HELP.items():
        if not wants(only, (name,)):
            sub.add_parser(name, help=line)
    if wants(only, ("quickstart",)):
        q = sub.add_parser(
            "quickstart",
            help=_COMMAND_HELP["quickstart"],
            description="RECAST: train a CIFAR ResNet-20 on scikit-learn digits (or load the shared pretrained "
            "ResNet-20 when --data-root points at the shared data), rewrite it with RECAST, reconstruct it by "
            "closed form and by the authors' Neural Mimicry recipe, report weight/feature similarity and top-1, "
            "and learn two new tasks with head only and with RECAST coefficients. KNOW: pretrain a small CNN, "
            "record its progressive forgetting, predict x2 / x8 weights (KNOWN and baselines) and transfer them "
            "to a new task against naive transfer. Everything offline, a few minutes on 2 cores.",
        )
        q.add_argument("--data-root", type=Path, default=None, help="shared data folder (MNIST, CIFAR-10 JPEG ...)")
        q.add_argument(
            "--smoke",
            action="store_true",
            help="the same flow at toy sizes (1-2 epochs, 20 mimicry iterations), seconds long: checks an install "
            "or a device; its numbers mean nothing",
        )
        add_common(q)
        add_runtime(q, precision=False)

    if wants(only, ("recast",)):
        from weightlab.recast.config import LOSSES, METHODS, PRESETS, SHARING_SCHEMES

        rc = sub.add_parser(
            "recast",
            help=_COMMAND_HELP["recast"],
            description="RECAST: rewrite layers as mixtures of shared template banks (plan, mimic), learn "
            "task after task by training only the coefficients and a head (adapt, evaluate), benchmark it (bench).",
        ).add_subparsers(dest="recast_command", required=True)
        m = rc.add_parser(
            "mimic",
            help="rewrite a model as template banks and fit them to its weights (no data)",
            description="Neural Mimicry: rewrite the target modules of a pretrained model as RECAST template "
            "mixtures and fit templates and coefficients to the pretrained weights.",
        )
        m.add_argument(
            "--model", required=True, help="weightlab model (resnet20..56, convmixer), a timm name, or tv:NAME"
        )
        m.add_argument("--weights", type=Path, default=None, help="local weights (.safetensors or weights-only .pt)")
        m.add_argument("--no-pretrained", action="store_true", help="do not load pretrained weights (random init)")
        m.add_argument(
            "--preset", choices=sorted(PRESETS), default=None, help="RECAST preset (default: by model family)"
        )
        m.add_argument(
            "--targets", default=None, help="comma-separated glob patterns of target modules (overrides preset)"
        )
        g = m.add_mutually_exclusive_group()
        g.add_argument("--groups", type=int, default=None, help="number of groups G per stage")
        g.add_argument("--layers-per-group", type=int, default=None, help="layers per group")
        g.add_argument("--sharing", choices=sorted(SHARING_SCHEMES), default=None, help="Fig. 6a sharing scheme")
        m.add_argument(
            "--templates",
            type=templates_arg,
            default=None,
            help="templates per bank n, or 'auto' (= layers per group)",
        )
        m.add_argument("--coef-sets", type=int, default=None, help="coefficient sets K")
        m.add_argument(
            "--method", choices=METHODS, default="recipe", help="mimicry method (default: the authors' recipe)"
        )
        m.add_argument(
            "--iterations", type=int, default=None, help="recipe iterations (default by family: 1000 / 3000)"
        )
        m.add_argument("--lr", type=float, default=None, help="RMSprop learning rate")
        m.add_argument("--lr-step", type=int, default=None, help="StepLR step size")
        m.add_argument("--loss", choices=LOSSES, default=None, help="weight loss (default smoothl1)")
        m.add_argument("--noise", type=float, default=None, help="coefficient noise sigma during mimicry")
        m.add_argument("--clip", type=float, default=None, help="gradient-norm clip")
        m.add_argument("--engine", choices=("auto", "fused", "torch"), default="auto", help="recipe engine")
        m.add_argument(
            "--dataset",
            default=None,
            help="test set for top-1 and features (default: cifar10 for CIFAR "
            "models when the data is there; 'none' to skip)",
        )
        m.add_argument(
            "--data-root", type=Path, default=None, help="data folder (default $WEIGHTLAB_DATA or ../shared/data)"
        )
        m.add_argument("--eval-limit", type=int, default=None, help="evaluate on a seeded random subset of this size")
        add_common(m)
        add_runtime(m, precision=False)
        pl = rc.add_parser(
            "plan",
            help="print the template banks RECAST (the PEFT method) would make of a model, before fitting anything",
            description="The banks (stage, group, role, modules, shape, n), the numbers per task and the modules left "
            "as they are, from weightlab.peft's architecture table or the options given. Only the architecture "
            "is built (random init, nothing downloaded).",
        )
        src = pl.add_mutually_exclusive_group(required=True)
        src.add_argument("--model", help="weightlab model (resnet20..56, convmixer), a timm name, or tv:NAME")
        src.add_argument(
            "--hf-config", type=Path, help="a folder with a Hugging Face config.json (AutoModel.from_config)"
        )
        pl.add_argument(
            "--targets", default=None, help="comma-separated module-name suffixes, or one regular expression"
        )
        pl.add_argument(
            "--layers-pattern", default=None, help="regex of the container holding the layers (blocks, layer)"
        )
        pl.add_argument("--layers-per-group", type=int, default=None, help="consecutive layers sharing a bank")
        pl.add_argument(
            "--templates",
            type=templates_arg,
            default=None,
            help="templates per bank n, or 'auto' (= layers per group)",
        )
        pl.add_argument("--coef-sets", type=int, default=2, help="coefficient sets K (default 2)")
        pl.add_argument("--out", type=Path, default=None, help="also write plan.json (the bank plan) here")
        pl.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
        from weightlab.cli.incremental import add_parsers

        add_parsers(rc)
    if wants(only, ("know",)):
        from weightlab.cli.know import add_parsers as add_know_parsers

        add_know_parsers(sub)
    from weightlab.cli.ranges import apply_ranges

    apply_ranges(parser)
    return parser


def cmd_recast_mimic(args: argparse.Namespace) -> int:
    from weightlab.data import load_dataset
    from weightlab.engine import place
    from weightlab.models import create_model, get_family
    from weightlab.recast.architectures import config_for_model
    from weightlab.recast.mimicry import MimicryConfig
    from weightlab.recast.pipeline import run_mimicry
    from weightlab.recast.planner import plan_banks
    from weightlab.recast.report import format_table, summary_rows

    model = create_model(args.model, pretrained=not args.no_pretrained and args.weights is None, weights=args.weights)
    place(model, args.device)
    family = get_family(model.weightlab_cfg)
    overrides = dict(
        templates=args.templates,
        coef_sets=args.coef_sets,
        num_groups=args.groups,
        layers_per_group=args.layers_per_group,
        sharing=args.sharing,
    )
    if args.targets:
        overrides["target_modules"] = [t.strip() for t in args.targets.split(",") if t.strip()]
    config, source = config_for_model(model, args.preset, **overrides)
    try:
        plans = plan_banks(model, config)
    except WeightlabError as e:  # say which configuration was chosen, and how to choose another
        raise WeightlabError(f"{e} (RECAST {source}; pass --preset or --targets)") from None
    roles: dict[str, int] = {}
    for p in plans:  # every role the targets matched (a glob that matches more than meant shows here)
        roles[p.role] = roles.get(p.role, 0) + len(p.modules)
    print(
        f"RECAST {source}: {len(plans)} banks over {sum(roles.values())} modules; roles: "
        + ", ".join(f"{r or '(none)'} x{c}" for r, c in roles.items())
    )
    mcfg = MimicryConfig.for_family(
        family,
        iterations=args.iterations,
        lr=args.lr,
        lr_step=args.lr_step,
        loss=args.loss,
        noise_std=args.noise,
        clip_norm=args.clip,
        engine=args.engine,
    )
    test = None
    dataset = args.dataset
    if dataset is None and family.eval_dataset is not None:
        try:
            test = load_dataset(family.eval_dataset, "test", args.data_root, limit=args.eval_limit, seed=args.seed)
        except WeightlabError as e:
            print(f"weightlab: note: no test set ({e}); reporting weights only", file=sys.stderr)
    elif dataset not in (None, "none"):
        test = load_dataset(dataset, "test", args.data_root, limit=args.eval_limit, seed=args.seed)
    _, report = run_mimicry(
        model,
        config,
        mcfg,
        method=args.method,
        model_name=args.model,
        out_dir=args.out,
        test_data=test,
        seed=args.seed,
        progress=not args.no_progress,
        device=args.device,
    )
    print(format_table(summary_rows(report)))
    for w in report.get("warnings", []):
        print(f"weightlab: warning: {w}", file=sys.stderr)
    if args.out:
        print(f"\nwrote {args.out}/report.json, report.md, report.png and the model in {args.out}/model")
    return 0


def cmd_recast_plan(args: argparse.Namespace) -> int:
    from weightlab.io import write_json
    from weightlab.peft import RecastConfig, describe_plan
    from weightlab.peft.model import plan_for

    if args.hf_config is not None:
        if not (args.hf_config / "config.json").is_file():
            raise WeightlabError(f"{args.hf_config}: no config.json")
        from transformers import AutoConfig, AutoModel

        model = AutoModel.from_config(AutoConfig.from_pretrained(str(args.hf_config), local_files_only=True))
        name = str(args.hf_config)
    else:
        from weightlab.models import create_model

        model = create_model(args.model, pretrained=False)
        name = args.model
    targets = None
    if args.targets:
        parts = [t.strip() for t in args.targets.split(",") if t.strip()]
        targets = parts[0] if len(parts) == 1 and any(c in parts[0] for c in "\\[](|*+?") else parts
    config = RecastConfig(
        target_modules=targets,
        layers_pattern=args.layers_pattern,
        layers_per_group=args.layers_per_group,
        templates=None if args.templates == "auto" else args.templates,
        coef_sets=args.coef_sets,
    )
    print(describe_plan(model, config))
    if args.out is not None:
        plans, single = plan_for(model, config)
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(
            args.out / "plan.json",
            dict(
                model=name,
                config={k: v for k, v in config.to_dict().items() if k != "peft_type"},
                banks=[p.to_dict() for p in plans],
                left_as_they_are=single,
            ),
        )
    return 0


#: OS errors a user's paths, permissions or disk cause (not programming errors): one line, exit 2
_USER_ERRNOS = {
    errno.EEXIST: "exists",
    errno.ENOTDIR: "is not a folder (or lies under a file)",
    errno.EISDIR: "is a folder, not a file",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "file name too long",
}
_DISK_WORDS = ("No space left", "Disk quota", "Read-only file system", "Permission denied")


def user_os_error(e: OSError) -> str | None:
    """One line for an OS error the user can cause and fix (naming the path), else None."""
    if e.errno not in _USER_ERRNOS:
        return None
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
    if e.errno == errno.EEXIST and e.filename and Path(str(e.filename)).is_file():
        return f"{e.filename}: is a file, not a folder"
    return f"{where}: {_USER_ERRNOS[e.errno]}" if where else f"{_USER_ERRNOS[e.errno]} ({e.strerror})"


def _one_line(message: str) -> str:
    """The message's last informative line (an error re-raised from a DataLoader worker carries the worker's
    traceback in its message)."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return message.strip()
    last = lines[-1]
    return last.split("WeightlabError: ", 1)[-1]


def _command_path(given: list[str]) -> tuple[str, ...]:
    """The command words at the start of the arguments (``recast bench --suite x`` -> ("recast", "bench"));
    none when they do not begin with a known command."""
    words = []
    for a in given:
        if a.startswith("-"):
            break
        words.append(a)
    return tuple(words) if words and words[0] in _COMMAND_HELP else ()


#: how long an idle OpenMP thread spins before it sleeps (libgomp's default is ~300,000 iterations): on a
#: busy CPU spinning threads take the cores the working ones need; 1000 costs ~1-8 % on a quiet CPU and
#: runs the recipe 3-4x faster next to 3 busy processes (benchmarks/omp_contention.py)
GOMP_SPINCOUNT = "1000"


def _tame_openmp() -> None:
    """Set ``GOMP_SPINCOUNT`` unless the user chose a wait policy; read when libgomp loads (with torch),
    so this runs before any command imports it, and worker processes inherit it."""
    import os

    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT


def main(argv: list[str] | None = None) -> int:
    _tame_openmp()
    given = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_path(given))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad option (one line already printed) or --help: a status, not an exception
        return e.code if isinstance(e.code, int) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that write how a result was made
    try:
        from weightlab.engine import seed_everything

        seed_everything(args.seed)
        apply_runtime(args)
        if args.command == "quickstart":
            from weightlab.bench.quickstart import run_quickstart

            return run_quickstart(
                data_root=args.data_root,
                out=args.out,
                seed=args.seed,
                progress=not args.no_progress,
                device=args.device,
                smoke=args.smoke,
            )
        if args.command == "recast" and args.recast_command == "mimic":
            return cmd_recast_mimic(args)
        if args.command == "recast" and args.recast_command == "plan":
            return cmd_recast_plan(args)
        if args.command == "recast":
            from weightlab.cli import incremental as icli

            return {"adapt": icli.cmd_adapt, "evaluate": icli.cmd_evaluate, "bench": icli.cmd_bench}[
                args.recast_command
            ](args)
        if args.command == "know":
            from weightlab.cli.know import COMMANDS

            return COMMANDS[args.know_command](args)
    except WeightlabError as e:
        print(f"weightlab: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        line = user_os_error(e)
        if line is None:
            raise  # not something the user's input or machine caused: keep the traceback
        print(f"weightlab: error: {line}", file=sys.stderr)
        return 2
    except Exception as e:
        if type(e).__name__ != "SafetensorError" or not any(w in str(e) for w in _DISK_WORDS):
            raise
        print(f"weightlab: error: writing a safetensors file failed: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("weightlab: interrupted", file=sys.stderr)
        return 130
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
