"""``weightlab know pretrain | forget``: the base Θ⁰ and its progressive-forgetting trajectory."""

from __future__ import annotations

import argparse
from pathlib import Path

from weightlab.cli.common import add_common as common
from weightlab.cli.common import (
    add_data_root,
    add_runtime,
    progress,
)
from weightlab.errors import WeightlabError


def pretrain_parser(kn) -> None:
    """``know pretrain``."""
    pt = kn.add_parser(
        "pretrain",
        help="train Θ⁰ on D⁰ to convergence (cosine decay, augmentation), resumably",
        description="The base a forgetting trajectory needs: train a fresh model on D⁰ with a learning "
        "rate decaying to zero (cosine) and train-time augmentation, evaluating a held-out validation "
        "split after every epoch. Writes base.safetensors, pretrain.json (history, whether the validation "
        "curve flattened) and a per-epoch checkpoint to --out; rerunning the same command resumes.",
    )
    pt.add_argument(
        "--model",
        required=True,
        help="weightlab model (smallcnn, resnet20, ...), timm name, tv:NAME or package.module:factory",
    )
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


def forget_parser(kn) -> None:
    """``know forget``."""
    f = kn.add_parser(
        "forget",
        help="fine-tune on nested, ever smaller subsets and record the trajectory",
        description="Progressive forgetting: fine-tune the model on D^1 ⊂ D^0, D^2 ⊂ D^1, ... "
        "(ratio r) and save every stage (safetensors) and a manifest to --out. "
        "Rerunning the same command resumes at the next stage.",
    )
    f.add_argument(
        "--model",
        required=True,
        help="weightlab model (resnet20, smallcnn, ...), timm name, tv:NAME or package.module:factory",
    )
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
