"""KNOW predictors, one class each behind :class:`Predictor`, and a registry by name."""

from __future__ import annotations

from weightlab.errors import WeightlabError
from weightlab.know.predictors.base import Predictor
from weightlab.know.predictors.consensus import ConsensusTA
from weightlab.know.predictors.curve_fit import ExpFit, LinearFit, LogFit
from weightlab.know.predictors.known import (MODEL_FOR_KIND, KNOWN, KNOWNAuthors, load_known_set,
                                             official_known_dir)
from weightlab.know.predictors.magmax import MagMax
from weightlab.know.predictors.task_vector import TaskVector
from weightlab.know.predictors.tsv import TSV

PREDICTORS: dict[str, type[Predictor]] = {
    cls.name: cls for cls in (LinearFit, LogFit, ExpFit, TaskVector, MagMax, ConsensusTA, TSV, KNOWN, KNOWNAuthors)
}
DISPLAY = {"linear_fit": "LinearFit", "log_fit": "LogFit", "exp_fit": "ExpFit", "task_vector": "TaskVector",
           "magmax": "MagMax", "consensus_ta": "ConsensusTA", "tsv": "TSV", "known": "KNOWN (weightlab)",
           "known_authors": "KNOWN (authors)"}
_ALIASES = {v.lower(): k for k, v in DISPLAY.items()} | {"tv": "task_vector", "consensus": "consensus_ta"}


def get_predictor(name: str, **kwargs) -> Predictor:
    """Build a predictor by name (``known``, ``task_vector``/``TaskVector``, ``log_fit``, …)."""
    key = _ALIASES.get(name.lower().replace("-", "_"), name.lower().replace("-", "_"))
    key = _ALIASES.get(key.replace("_", ""), key)
    if key not in PREDICTORS:
        raise WeightlabError(f"unknown KNOW predictor '{name}' (use one of {', '.join(PREDICTORS)})")
    return PREDICTORS[key](**kwargs)


__all__ = ["Predictor", "PREDICTORS", "DISPLAY", "get_predictor", "LinearFit", "LogFit", "ExpFit", "TaskVector",
           "MagMax", "ConsensusTA", "TSV", "KNOWN", "KNOWNAuthors", "MODEL_FOR_KIND", "load_known_set", "official_known_dir"]
