"""Consensus Task Arithmetic with TALL masks (Wang et al. 2024).

Candidates for step k: ``τ_j = Θ⁰ − Θ^j`` (j = 1 … k) and their sum ``τ_MTL``. TALL mask of each
candidate: ``m_j = |τ_j| ≥ λ_tall·|τ_MTL − τ_j|``. A coordinate is kept when at least
``min_agree`` (default 2) masks select it; ``Θ̂^{-k} = Θ⁰ + λ·(consensus ⊙ τ_MTL)``.
Majority voting needs at least three candidates, so only steps k ≥ 3 (×8 and beyond for r=0.5)
are defined; smaller steps are refused, as the paper notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from weightlab.know.predictors.base import PREDICTORS, TaskVectorMethod, TaskVectorOptions, task_vectors
from weightlab.know.trajectory import Trajectory
from weightlab.registry import option


@dataclass
class ConsensusOptions(TaskVectorOptions):
    tall_lambda: float = option(0.4, "TALL-mask threshold λ_t", minimum=0.0)
    min_agree: int = option(2, "candidates that must agree on a coordinate", minimum=1)


@PREDICTORS.register(
    "consensus_ta", display="ConsensusTA", paper="Wang et al. 2024", options=ConsensusOptions, aliases=("consensus",)
)
class ConsensusTA(TaskVectorMethod):
    """Task arithmetic on the coordinates most candidates agree on."""

    def unsupported(self, step: int) -> str | None:
        if step < 3:
            return (
                f"consensus needs at least 3 candidate task vectors and step {step} has {step} "
                "(predict step 3 or more, i.e. x8 for r=0.5)"
            )
        return None

    def _predict_keys(self, trajectory: Trajectory, keys, steps):
        out = {k: {} for k in steps}
        for name in keys:
            taus = torch.stack(task_vectors(trajectory, name, max(steps)))
            theta0 = trajectory.stages[0][name].double()
            for k in steps:
                cand = taus[:k]
                mtl = cand.sum(0)
                masks = cand.abs() >= self.opts.tall_lambda * (mtl.unsqueeze(0) - cand).abs()
                consensus = masks.sum(0) >= self.opts.min_agree
                out[k][name] = theta0 + self.lam * consensus * mtl
        return out
