"""What every ``weightlab`` command shares: the common options and seeding."""

from __future__ import annotations

import argparse
from pathlib import Path

#: the help of every --data-root
DATA_ROOT_HELP = (
    "folder with the data sets (MNIST/, FashionMNIST/, cifar10-jpeg.tar, ImageFolder trees); default "
    "$WEIGHTLAB_DATA, else $WEIGHTLAB_SHARED/data"
)


def wants(only: tuple[str, ...] | None, path: tuple[str, ...]) -> bool:
    """Whether the parser of command ``path`` gets its options, when the parser is built for the command
    path ``only`` (the words the user typed; None: the whole tree). A command off that path is a stub
    with its help line, so ``--help`` and parsing import only what the typed command needs."""
    return only is None or tuple(only[: len(path)]) == tuple(path)


def add_data_root(p: argparse.ArgumentParser) -> None:
    """``--data-root`` (every command that reads data sets)."""
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)


def add_common(p: argparse.ArgumentParser) -> None:
    """``--seed``, ``--out``, ``--no-progress`` (every subcommand takes them)."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, default=None, help="output folder (JSON, Markdown, plots, weights)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_runtime(p: argparse.ArgumentParser, precision: bool = True) -> None:
    """``--device`` (and ``--precision``, ``--deterministic``) for the commands that train or evaluate."""
    from weightlab.engine import DEVICE_HELP, PRECISIONS

    p.add_argument("--device", default="auto", help=f"where to train and evaluate: {DEVICE_HELP} (default auto)")
    if precision:
        p.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="fp32",
            help="fp32, or mixed precision: bf16 / fp16 autocast (fp16 with gradient scaling); default fp32",
        )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic kernels where PyTorch has them (slower on a GPU; the CPU is deterministic already)",
    )


def apply_runtime(args: argparse.Namespace) -> None:
    """Resolve ``--device`` once (``auto`` becomes the device it picks; a missing GPU is one error line)
    and switch deterministic kernels on when asked."""
    from weightlab.engine import resolve_device, set_deterministic

    if getattr(args, "device", None) is not None and hasattr(args, "deterministic"):
        args.device = str(resolve_device(args.device))
        if args.deterministic:
            set_deterministic(True)


def add_backend_flags(p, default: str = "serial", threads: bool = True) -> None:
    """``--backend``, ``--workers``, ``--address``, ``--gpus-per-run``, ``--threads`` for a command."""
    from weightlab.parallel import BACKENDS

    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default,
        help="where the runs go: serial (this process), processes, ray (a local Ray runtime, or the cluster "
        f"at --address), auto (Ray when installed, else processes); default {default}",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel runs for processes / a local Ray (default 2)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local runtime)")
    p.add_argument(
        "--gpus-per-run", type=float, default=0.0, help="Ray num_gpus per run; fractions share a GPU (default 0)"
    )
    if not threads:
        return
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: 1 per worker; unchanged when serial). Results are identical "
        "across backends for the same threads",
    )


def backend_from_args(args):
    from weightlab.parallel import Backend

    return Backend(args.backend, args.workers, args.address, args.gpus_per_run, getattr(args, "threads", None))


def progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def command_line(args: argparse.Namespace) -> str:
    """The command line as typed (for the records that say how a result was made)."""
    import shlex

    return "weightlab " + " ".join(shlex.quote(a) for a in args.argv)


def templates_arg(v: str):
    """``--templates``: a positive integer or ``auto``."""
    if v == "auto":
        return "auto"
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {v!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {v!r}")
    return n


def seed_list(text: str) -> tuple[int, ...]:
    """``42,1998`` -> (42, 1998): seeds in [0, 2^32), no repeats."""
    from weightlab.cli.ranges import SEED

    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"must be comma-separated seeds, got {text!r}")
    seeds = tuple(SEED(p) for p in parts)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeats a seed: {text!r}")
    return seeds
