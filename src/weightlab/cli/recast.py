"""``weightlab recast plan | mimic`` and the ``recast`` command group (``adapt | evaluate | bench``:
:mod:`weightlab.cli.incremental`), one parser function per command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from weightlab.cli.common import add_common, add_runtime, templates_arg
from weightlab.cli.incremental import add_parsers as add_incremental_parsers
from weightlab.cli.incremental import cmd_adapt, cmd_bench, cmd_evaluate
from weightlab.errors import WeightlabError


def add_parsers(sub, help_line: str) -> None:
    """``recast ...``."""
    rc = sub.add_parser(
        "recast",
        help=help_line,
        description="RECAST: rewrite layers as mixtures of shared template banks (plan, mimic), learn "
        "task after task by training only the coefficients and a head (adapt, evaluate), benchmark it (bench).",
    ).add_subparsers(dest="recast_command", required=True)
    mimic_parser(rc)
    plan_parser(rc)
    add_incremental_parsers(rc)


def mimic_parser(rc) -> None:
    """``recast mimic``."""
    from weightlab.cli.catalogue import load
    from weightlab.recast.config import LOSSES, METHODS, SHARING_SCHEMES

    presets = load()["presets"]

    m = rc.add_parser(
        "mimic",
        help="rewrite a model as template banks and fit them to its weights (no data)",
        description="Neural Mimicry: rewrite the target modules of a pretrained model as RECAST template "
        "mixtures and fit templates and coefficients to the pretrained weights.",
    )
    m.add_argument(
        "--model",
        required=True,
        help="weightlab model (resnet20..56, convmixer), a timm name, tv:NAME, or package.module:factory (your own)",
    )
    m.add_argument("--weights", type=Path, default=None, help="local weights (.safetensors or weights-only .pt)")
    m.add_argument("--no-pretrained", action="store_true", help="do not load pretrained weights (random init)")
    m.add_argument("--preset", choices=sorted(presets), default=None, help="RECAST preset (default: by model family)")
    m.add_argument("--targets", default=None, help="comma-separated glob patterns of target modules (overrides preset)")
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
    m.add_argument("--method", choices=METHODS, default="recipe", help="mimicry method (default: the authors' recipe)")
    m.add_argument("--iterations", type=int, default=None, help="recipe iterations (default by family: 1000 / 3000)")
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


def plan_parser(rc) -> None:
    """``recast plan``."""
    pl = rc.add_parser(
        "plan",
        help="print the template banks RECAST (the PEFT method) would make of a model, before fitting anything",
        description="The banks (stage, group, role, modules, shape, n), the numbers per task and the modules left "
        "as they are, from weightlab.peft's architecture table or the options given. Only the architecture "
        "is built (random init, nothing downloaded).",
    )
    src = pl.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model",
        help="weightlab model (resnet20..56, convmixer), a timm name, tv:NAME, or package.module:factory (your own)",
    )
    src.add_argument("--hf-config", type=Path, help="a folder with a Hugging Face config.json (AutoModel.from_config)")
    pl.add_argument("--targets", default=None, help="comma-separated module-name suffixes, or one regular expression")
    pl.add_argument("--layers-pattern", default=None, help="regex of the container holding the layers (blocks, layer)")
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


COMMANDS = {
    "mimic": cmd_recast_mimic,
    "plan": cmd_recast_plan,
    "adapt": cmd_adapt,
    "evaluate": cmd_evaluate,
    "bench": cmd_bench,
}
