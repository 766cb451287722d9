"""Shared helpers for benchmarks: machine description and atomic JSON output."""

from __future__ import annotations

import sys
from pathlib import Path

from weightlab.machine import machine  # noqa: F401  (re-exported for the benchmarks)

RESULTS = Path(__file__).resolve().parent / "results"


def command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def write(name: str, payload: dict) -> Path:
    from weightlab.io import write_json

    path = RESULTS / name
    write_json(path, payload)
    return path
