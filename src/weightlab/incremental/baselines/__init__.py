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

from weightlab.incremental.baselines.avalanche_cl import AVALANCHE_BASELINES, run_avalanche
from weightlab.incremental.baselines.derpp import DERpp
from weightlab.incremental.baselines.harness import ContinualMethod, run_own
from weightlab.incremental.baselines.hat import HAT
from weightlab.incremental.baselines.inflora import InfLoRA
from weightlab.incremental.baselines.l2p import L2P
from weightlab.incremental.baselines.spec import BaselineSpec, is_baseline, parse_baseline

OWN_BASELINES: dict[str, type[ContinualMethod]] = {"derpp": DERpp, "hat": HAT, "inflora": InfLoRA, "l2p": L2P}
BASELINES = {**AVALANCHE_BASELINES, **{k: (v.__doc__ or k).strip().splitlines()[0] for k, v in OWN_BASELINES.items()}}


def run_baseline(base, method: str, tasks, cfg, *, seed: int, progress: bool = True) -> dict:
    """Learn ``tasks`` in order with a continual-learning baseline; the same record as
    :func:`weightlab.incremental.bench.run_sequence` (accuracy matrix, metrics, sizes, wall time)."""
    spec = parse_baseline(method)
    if spec.method in OWN_BASELINES:
        return run_own(OWN_BASELINES[spec.method], base, spec, tasks, cfg, seed=seed, progress=progress)
    return run_avalanche(base, spec, tasks, cfg, seed=seed, progress=progress)


__all__ = ["BASELINES", "OWN_BASELINES", "BaselineSpec", "ContinualMethod", "is_baseline", "parse_baseline",
           "run_baseline"]
