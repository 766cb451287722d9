"""Continual-learning baselines of the RECAST paper's Tables 1-2, on the same tasks, splits and seeds
as the per-task methods (``weightlab recast bench``).

Unlike the per-task methods (a frozen shared backbone, see :mod:`weightlab.incremental.model`),
these train one shared backbone through the whole sequence, with a head per task (task-incremental,
multi-head), so they can forget:

* from Avalanche (``avalanche-lib``): ``ewc``, ``lwf``, ``gdumb``, ``er_ace`` (:mod:`.avalanche_cl`).

Options as for the other methods: ``ewc:lambda=100``, ``er_ace:per_class=120``.
"""

from weightlab.incremental.baselines.avalanche_cl import AVALANCHE_BASELINES, run_avalanche
from weightlab.incremental.baselines.spec import BaselineSpec, is_baseline, parse_baseline

BASELINES = dict(AVALANCHE_BASELINES)


def run_baseline(base, method: str, tasks, cfg, *, seed: int, progress: bool = True) -> dict:
    """Learn ``tasks`` in order with a continual-learning baseline; the same record as
    :func:`weightlab.incremental.bench.run_sequence` (accuracy matrix, metrics, sizes, wall time)."""
    spec = parse_baseline(method)
    return run_avalanche(base, spec, tasks, cfg, seed=seed, progress=progress)


__all__ = ["BASELINES", "BaselineSpec", "is_baseline", "parse_baseline", "run_baseline"]
