"""What every ``weightlab`` command shares: the common options and seeding."""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def add_common(p: argparse.ArgumentParser) -> None:
    """``--seed``, ``--out``, ``--no-progress`` (every subcommand takes them)."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, default=None, help="output folder (JSON, Markdown, plots, weights)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress(args: argparse.Namespace) -> bool:
    return not args.no_progress


def command_line(args: argparse.Namespace) -> str:
    """The command line as typed (for the records that say how a result was made)."""
    import shlex

    return "weightlab " + " ".join(shlex.quote(a) for a in args.argv)
