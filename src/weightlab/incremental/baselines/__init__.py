"""Continual-learning baselines of the RECAST paper's Tables 1-2, on the same tasks, splits and seeds
as the per-task methods (``weightlab recast bench``).

Unlike the per-task methods (a frozen shared backbone, see :mod:`weightlab.incremental.model`),
these share one model across the whole sequence, with a head per task (task-incremental,
multi-head), so they can forget:

* from Avalanche (``avalanche-lib``): ``ewc``, ``lwf``, ``gdumb``, ``er_ace`` (:mod:`.avalanche_cl`);
* implemented here (:mod:`.harness` runs them): ``derpp`` (:mod:`.derpp`; Avalanche's DER is
  class-incremental only), ``hat`` (:mod:`.hat`), ``inflora`` (:mod:`.inflora`, ViT) and ``l2p``
  (:mod:`.l2p`, ViT; Avalanche's L2P only builds a hub ViT-Base).

Options as for the other methods: ``ewc:lambda=100``, ``er_ace:per_class=120``, ``hat:c=0.5``.
"""

from weightlab.incremental.baselines.avalanche_cl import AvalancheBaseline, run_avalanche
from weightlab.incremental.baselines.harness import ContinualMethod, run_own
from weightlab.incremental.baselines.spec import BASELINES, BaselineSpec, is_baseline, parse_baseline


def run_baseline(base, method: str, tasks, cfg, *, seed: int, progress: bool = True) -> dict:
    """Learn ``tasks`` in order with a continual-learning baseline; the same record as
    :func:`weightlab.incremental.sequence.learn_sequence` (accuracy matrix, metrics, sizes, wall time)."""
    spec = parse_baseline(method)
    cls = BASELINES.get(spec.method)
    if issubclass(cls, AvalancheBaseline):
        return run_avalanche(cls, base, spec, tasks, cfg, seed=seed, progress=progress)
    return run_own(cls, base, spec, tasks, cfg, seed=seed, progress=progress)


__all__ = [
    "BASELINES",
    "BaselineSpec",
    "ContinualMethod",
    "AvalancheBaseline",
    "is_baseline",
    "parse_baseline",
    "run_baseline",
]
