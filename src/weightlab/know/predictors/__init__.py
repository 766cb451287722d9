"""KNOW predictors, one class each behind :class:`Predictor`, registered in :data:`PREDICTORS`.

Adding one is one file here with ``@PREDICTORS.register(name, display=..., options=OptionsDataclass)`` on
the class: the registry discovers it, the CLI (``know predict --method``, one flag per option) and the
contract tests pick it up; a suite runs it once its definition names it.
"""

from __future__ import annotations

from weightlab.errors import WeightlabError
from weightlab.know.predictors.base import PREDICTORS, Predictor
from weightlab.know.predictors.consensus import ConsensusTA
from weightlab.know.predictors.curve_fit import ExpFit, LinearFit, LogFit
from weightlab.know.predictors.known import KNOWN, MODEL_FOR_KIND, KNOWNAuthors, load_known_set, official_known_dir
from weightlab.know.predictors.magmax import MagMax
from weightlab.know.predictors.task_vector import TaskVector
from weightlab.know.predictors.tsv import TSV

# PREDICTORS finds every module here on its first lookup (a new predictor file is picked up as it is)


def display_name(name: str) -> str:
    """How tables and plots name a predictor (its registered display name; ``name`` itself otherwise)."""
    return PREDICTORS.entry(name).display if name in PREDICTORS else name


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
    return PREDICTORS.get(resolve_predictor(name))(**kwargs)


__all__ = [
    "Predictor",
    "PREDICTORS",
    "display_name",
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
