"""MagMax (Marczak et al. 2024): per coordinate, the candidate task vector with the largest
magnitude. Step k has the k candidates ``Θ⁰ − Θ^j`` (j = 1 … k); Θ̂^{-k} = Θ⁰ + λ·τ_max.
With one candidate (step 1) it equals Task Vector."""

from __future__ import annotations

import torch

from weightlab.know.predictors.base import PREDICTORS, TaskVectorMethod, TaskVectorOptions, task_vectors
from weightlab.know.trajectory import Trajectory


@PREDICTORS.register("magmax", display="MagMax", paper="Marczak et al. 2024", options=TaskVectorOptions)
class MagMax(TaskVectorMethod):
    """Per coordinate, the largest-magnitude task-vector update."""

    def _predict_keys(self, trajectory: Trajectory, keys, steps):
        out = {k: {} for k in steps}
        for name in keys:
            taus = torch.stack(task_vectors(trajectory, name, max(steps)))  # (K, ...)
            theta0 = trajectory.stages[0][name].double()
            for k in steps:
                cand = taus[:k]
                pick = cand.abs().argmax(dim=0, keepdim=True)
                out[k][name] = theta0 + self.lam * cand.gather(0, pick)[0]
        return out
