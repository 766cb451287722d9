"""Every numeric command-line option's allowed range, in one table, checked once when the line is parsed.

:func:`apply_ranges` replaces the ``int`` / ``float`` type of every numeric option of the parser by its
:class:`Range` (and adds the range to its help); a numeric option missing from the table is a programming
error at start-up, so no option goes unchecked. A value out of range ends the command with one line::

    weightlab: error: argument --epochs: must be an integer >= 1, got '0'
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{what} in {left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        if self.hi is not None:
            return f"{what} {'<' if self.hi_open else '<='} {_fmt(self.hi)}"
        return f"a finite {'integer' if self.kind is int else 'number'}"

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        low_bad = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high_bad = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if low_bad or high_bad:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return value

    @property
    def __name__(self) -> str:  # argparse names the type in some messages
        return self.kind.__name__


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


COUNT = Range(int, 1)  # epochs, sizes, limits, workers ...: at least one
NONNEG_INT = Range(int, 0)
POSITIVE = Range(float, 0, lo_open=True)  # learning rates, clip norms, time budgets
NONNEG = Range(float, 0)
FRACTION = Range(float, 0, 1, lo_open=True, hi_open=True)
SEED = Range(int, 0, 2**32 - 1)

#: option -> allowed range (the same option means the same thing in every command)
RANGES: dict[str, Range] = {
    "--seed": SEED,
    "--start-id": NONNEG_INT,
    "--curriculum": NONNEG_INT,  # 0: plain pretraining
    "--val": NONNEG_INT,  # 0: nothing held out
    "--lr-step": NONNEG_INT,  # 0: a third of the epochs
    "--warmup-epochs": NONNEG_INT,
    **{
        opt: COUNT
        for opt in (
            "--batch-size",
            "--chunk",
            "--coef-sets",
            "--epochs",
            "--eval-limit",
            "--eval-size",
            "--groups",
            "--iterations",
            "--layers-per-group",
            "--limit",
            "--max-rows",
            "--max-rows-per-run",
            "--min-agree",
            "--patience",
            "--pretrain-epochs",
            "--runs",
            "--stages",
            "--steps",
            "--test-limit",
            "--test-size",
            "--threads",
            "--train-limit",
            "--train-size",
            "--val-size",
            "--workers",
        )
    },
    **{opt: POSITIVE for opt in ("--lr", "--coef-lr", "--warmup-lr", "--clip", "--time-budget")},
    **{opt: NONNEG for opt in ("--weight-decay", "--noise", "--gpus-per-run", "--tall-lambda")},
    "--ratio": FRACTION,
    "--val-fraction": FRACTION,
    "--keep": Range(float, 0, 1, lo_open=True),
    "--seq-len": Range(int, 2, 5),  # KNOWN's history length S: the meta rows hold five stages
    "--lam": Range(float),  # any finite value; a negative one is warned about where it is used
}


def apply_ranges(parser: argparse.ArgumentParser) -> None:
    """Give every numeric option of ``parser`` and its subcommands its range from :data:`RANGES`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                apply_ranges(sub)
            continue
        if action.type not in (int, float) or not action.option_strings:
            continue
        option = action.option_strings[-1]
        if option not in RANGES:
            raise RuntimeError(f"numeric option {option} has no range in weightlab.cli.ranges.RANGES")
        rng = RANGES[option]
        if rng.kind is not action.type:
            raise RuntimeError(f"{option}: RANGES says {rng.kind.__name__}, the parser {action.type.__name__}")
        action.type = rng
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = f"{action.help} [{rng.describe()}]"


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``weightlab: error: ...``) and exit status 2,
    instead of a usage block; ``--help`` still prints the usage."""

    def error(self, message: str):
        import re

        from weightlab.errors import did_you_mean

        bad = re.match(r"argument .*: invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if bad:  # a mistyped name: the closest choice first
            choices = [c.strip().strip("'") for c in bad.group(2).split(",")]
            message = message.replace(f"'{bad.group(1)}'", f"'{bad.group(1)}'{did_you_mean(bad.group(1), choices)}", 1)
        command = " ".join(self.prog.split()[1:])
        where = f" ({command} --help for the options)" if command else ""
        self.exit(2, f"weightlab: error: {message}{where}\n")
