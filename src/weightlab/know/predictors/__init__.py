"""KNOW predictors, one class each behind :class:`Predictor`, registered in :data:`PREDICTORS`.

Adding one: a file here with ``@PREDICTORS.register(name, display=..., options=OptionsDataclass)`` on
the class and its import below; the CLI (``know predict --method``, one flag per option), the suites
and the contract tests pick it up.
"""

from __future__ import annotations

import importlib

from weightlab.errors import WeightlabError

# one file per predictor; importing registers it, in this order (the order of the suites' rows and tables)
for _module in ("curve_fit", "task_vector", "consensus", "magmax", "tsv", "known"):
    importlib.import_module(f"weightlab.know.predictors.{_module}")
from weightlab.know.predictors.base import PREDICTORS, Predictor  # noqa: E402
from weightlab.know.predictors.consensus import ConsensusTA  # noqa: E402
from weightlab.know.predictors.curve_fit import ExpFit, LinearFit, LogFit  # noqa: E402
from weightlab.know.predictors.known import KNOWN, MODEL_FOR_KIND, KNOWNAuthors, load_known_set, official_known_dir  # noqa: E402
from weightlab.know.predictors.magmax import MagMax  # noqa: E402
from weightlab.know.predictors.task_vector import TaskVector  # noqa: E402
from weightlab.know.predictors.tsv import TSV  # noqa: E402
from weightlab.registry import build_options  # noqa: E402

DISPLAY = {e.name: e.display for e in PREDICTORS.entries()}


def resolve_predictor(name: str) -> str:
    """The registered name of ``name`` (``TaskVector``, ``task-vector``, ``tv``, ``KNOWN (authors)`` ...)."""
    key = name.lower().replace("-", "_")
    by_display = {e.display.lower(): e.name for e in PREDICTORS.entries()}
    for candidate in (key, by_display.get(key), by_display.get(key.replace("_", ""))):
        if candidate and candidate in PREDICTORS:
            return PREDICTORS.resolve(candidate)
    raise WeightlabError(f"unknown KNOW predictor '{name}' (use one of {', '.join(PREDICTORS)})")


def get_predictor(name: str, **kwargs) -> Predictor:
    """Build a predictor by name (``known``, ``task_vector``/``TaskVector``, ``log_fit``, …); ``kwargs``
    are ``kinds`` and the predictor's options (checked: name, type, range)."""
    entry = PREDICTORS.entry(resolve_predictor(name))
    options = {k: v for k, v in kwargs.items() if k != "kinds"}
    if not isinstance(options.get("weights"), dict):  # a dict of loaded hypermodels is passed as it is
        build_options(entry.options, options, entry.name)
    return entry.obj(**kwargs)


__all__ = [
    "Predictor",
    "PREDICTORS",
    "DISPLAY",
    "get_predictor",
    "resolve_predictor",
    "LinearFit",
    "LogFit",
    "ExpFit",
    "TaskVector",
    "MagMax",
    "ConsensusTA",
    "TSV",
    "KNOWN",
    "KNOWNAuthors",
    "MODEL_FOR_KIND",
    "load_known_set",
    "official_known_dir",
]
