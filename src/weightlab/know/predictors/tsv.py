"""Task Singular Vectors merge (TSV-M, Gargiulo et al. 2025) of the candidate task vectors.

For step k the candidates are ``τ_j = Θ⁰ − Θ^j`` (j = 1 … k). Each matrix-shaped parameter (convs
reshaped to ``out × rest``) of each candidate is reduced to its top ``keep`` fraction of singular
components (10% by default, at least one); the kept left and right singular vectors of all
candidates are concatenated and orthogonalised (nearest orthogonal matrix, ``U = PQᵀ`` from the SVD),
and the merged update is ``U⊥ · diag(σ) · V⊥ᵀ``. Vectors (biases) are summed as in task arithmetic.
Θ̂^{-k} = Θ⁰ + λ·update. With one candidate this is Task Vector on a rank-truncated τ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from weightlab.errors import WeightlabError
from weightlab.know.predictors.base import PREDICTORS, TaskVectorMethod, TaskVectorOptions, task_vectors
from weightlab.know.trajectory import Trajectory
from weightlab.registry import option


def _orthogonalize(m: torch.Tensor) -> torch.Tensor:
    p, _, qt = torch.linalg.svd(m, full_matrices=False)
    return p @ qt


@dataclass
class TSVOptions(TaskVectorOptions):
    keep: float = option(0.1, "fraction of singular components kept per layer (0, 1]", minimum=0.0)


@PREDICTORS.register("tsv", display="TSV", paper="Gargiulo et al. 2025", options=TSVOptions)
class TSV(TaskVectorMethod):
    """Task singular vectors: each update reduced to its top singular components, then merged."""

    def __init__(self, kinds=None, **options) -> None:
        super().__init__(kinds, **options)
        if not 0.0 < self.opts.keep <= 1.0:
            raise WeightlabError(f"TSV keep fraction must be in (0, 1], got {self.opts.keep}")

    def merged_update(self, taus: list[torch.Tensor]) -> torch.Tensor:
        if taus[0].ndim < 2:
            return torch.stack(taus).sum(0)
        shape = taus[0].shape
        mats = [t.reshape(shape[0], -1) for t in taus]
        rank = max(1, math.ceil(self.opts.keep * min(mats[0].shape)))
        us, ss, vs = [], [], []
        for m in mats:
            u, s, vt = torch.linalg.svd(m, full_matrices=False)
            us.append(u[:, :rank])
            ss.append(s[:rank])
            vs.append(vt[:rank].T)
        u, s, v = torch.cat(us, 1), torch.cat(ss), torch.cat(vs, 1)
        if len(taus) > 1:
            u, v = _orthogonalize(u), _orthogonalize(v)
        return ((u * s) @ v.T).reshape(shape)

    def _predict_keys(self, trajectory: Trajectory, keys, steps):
        out = {k: {} for k in steps}
        for name in keys:
            taus = task_vectors(trajectory, name, max(steps))
            theta0 = trajectory.stages[0][name].double()
            for k in steps:
                out[k][name] = theta0 + self.lam * self.merged_update(taus[:k])
        return out
