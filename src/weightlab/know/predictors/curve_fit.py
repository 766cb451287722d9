"""Coordinate-wise curve fits of the trajectory, extrapolated beyond Θ⁰ (LinearFit, LogFit, ExpFit).

Time runs along the forgetting sequence read oldest-forgetting-stage first, as KNOWN reads it:
``t = 1 … S`` for ``[Θ^{S-1}, …, Θ^0]``; step ``k`` is ``t = S + k``. Each coordinate is fitted by
least squares with ``θ(t) = a + b·φ(t)``: LinearFit ``φ = t``, LogFit ``φ = ln t`` (decelerating),
ExpFit ``φ = exp(t − S)`` (accelerating; the shift only conditions the fit). All three are
linear in (a, b), so one pseudo-inverse fits every coordinate of the model at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from weightlab.know.predictors.base import PREDICTORS, Predictor, flat_sequences, unflatten
from weightlab.know.trajectory import Trajectory
from weightlab.registry import option


@dataclass
class CurveFitOptions:
    stages: int | None = option(None, "how many of the newest stages to fit (default all)", minimum=2)


class CurveFit(Predictor):
    basis: str = ""

    def options(self) -> dict:
        return {"basis": self.basis, "stages": self.opts.stages}

    def phi(self, t: torch.Tensor, s: int) -> torch.Tensor:
        raise NotImplementedError

    def min_stages(self, step: int) -> int:
        return max(2, self.opts.stages or 2)

    def _predict_keys(self, trajectory: Trajectory, keys, steps):
        s = min(self.opts.stages or trajectory.num_stages, trajectory.num_stages)
        order = list(range(s - 1, -1, -1))  # oldest-forgetting first: Θ^{s-1}, …, Θ^0
        y = flat_sequences(trajectory, keys, order)  # (s, N)
        t = torch.arange(1, s + 1, dtype=torch.float64)
        design = torch.stack([torch.ones_like(t), self.phi(t, s)], dim=1)
        # the tiny design matrix is solved on the CPU and applied where the trajectory is
        coef = torch.linalg.pinv(design).to(y.device) @ y  # (2, N)
        out = {}
        for k in steps:
            tk = torch.tensor([float(s + k)], dtype=torch.float64)
            row = torch.stack([torch.ones_like(tk), self.phi(tk, s)], dim=1).to(y.device)  # (1, 2)
            out[k] = unflatten((row @ coef)[0], trajectory, keys)
        return out


@PREDICTORS.register("linear_fit", display="LinearFit", options=CurveFitOptions)
class LinearFit(CurveFit):
    """θ(t) = a + b·t fitted per coordinate and extrapolated."""

    basis = "t"

    def phi(self, t, s):
        return t


@PREDICTORS.register("log_fit", display="LogFit", options=CurveFitOptions)
class LogFit(CurveFit):
    """θ(t) = a + b·ln t fitted per coordinate and extrapolated."""

    basis = "ln t"

    def phi(self, t, s):
        return torch.log(t)


@PREDICTORS.register("exp_fit", display="ExpFit", options=CurveFitOptions)
class ExpFit(CurveFit):
    """θ(t) = a + b·exp(t − S) fitted per coordinate and extrapolated."""

    basis = "exp(t - S)"

    def phi(self, t, s):
        return torch.exp(t - float(s))
