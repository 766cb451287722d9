"""Task Vector extrapolation (Ilharco et al. 2022, as used in KNOW): Θ̂^{-k} = Θ⁰ + λ(Θ⁰ − Θ^k)."""

from __future__ import annotations

from weightlab.know.predictors.base import PREDICTORS, TaskVectorMethod, TaskVectorOptions
from weightlab.know.trajectory import Trajectory


@PREDICTORS.register(
    "task_vector", display="TaskVector", paper="Ilharco et al. 2023", options=TaskVectorOptions, aliases=("tv",)
)
class TaskVector(TaskVectorMethod):
    """Θ̂ = Θ⁰ + λ(Θ⁰ − Θ^k)."""

    def _predict_keys(self, trajectory: Trajectory, keys, steps):
        out = {}
        for k in steps:
            out[k] = {}
            for name in keys:
                theta0 = trajectory.stages[0][name].double()
                out[k][name] = theta0 + self.lam * (theta0 - trajectory.stages[k][name].double())
        return out
