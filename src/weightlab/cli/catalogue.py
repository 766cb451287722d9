"""The registries' names as the CLI's help and choices need them, without importing torch.

The method, predictor and suite registries live in modules that import torch (their entries are torch
code), which costs seconds. ``catalogue.json`` beside this file holds what ``recast adapt``, ``recast
bench``, ``know predict`` and ``know bench`` list: data made from the registries, not a second place to
register anything. ``tests/test_bad_inputs.py`` checks that it equals :func:`build`; after adding a method,
predictor, suite or sequence, write it again with

    python -m weightlab.cli.catalogue
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

PATH = Path(__file__).with_name("catalogue.json")


def build() -> dict:
    """The catalogue, from the live registries (imports them, hence torch)."""
    from weightlab.bench.suites import KNOW_SUITES, SUITES
    from weightlab.data.tasks import SEQUENCES
    from weightlab.incremental.methods import method_names
    from weightlab.know.kinds import DEFAULT_KINDS, PREDICTABLE
    from weightlab.know.predictors import PREDICTORS
    from weightlab.registry import option_flag_specs

    return {
        "sequences": list(SEQUENCES),
        "methods": list(method_names()),
        "suites": sorted(SUITES),
        "know_suites": sorted(KNOW_SUITES),
        "predictors": list(PREDICTORS),
        "default_kinds": list(DEFAULT_KINDS),
        "predictable": list(PREDICTABLE),
        "predictor_flags": option_flag_specs(PREDICTORS.entries()),
    }


@functools.cache
def load() -> dict:
    """The catalogue as written (read once per process; treat it as read-only)."""
    return json.loads(PATH.read_text(encoding="utf-8"))


if __name__ == "__main__":
    from weightlab.io import write_json

    write_json(PATH, build())
    print(f"wrote {PATH}")
