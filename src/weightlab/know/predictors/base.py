"""The one interface every KNOW predictor implements: a trajectory in, predicted state dicts out.

``Predictor.predict(trajectory, step)`` returns Θ̂^{-step} (``step=1`` is ×1/r, i.e. ×2 for
r=0.5; ``step=2`` ×4; ``step=3`` ×8). Only keys of the predictor's ``kinds`` are changed; every
other entry (BatchNorm statistics, counters, kinds left out) is copied from Θ⁰.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from weightlab.errors import WeightlabError
from weightlab.know.kinds import parse_kinds
from weightlab.know.trajectory import Trajectory
from weightlab.registry import Registry, option, options_dict, registered_options

#: every KNOW predictor, registered with ``@PREDICTORS.register(name, display=..., paper=..., options=...)``;
#: the options dataclass lists the keyword arguments its constructor takes besides ``kinds`` (checked by
#: name, type and range, then kept typed as ``self.opts``: the one options style of every registered kind).
PREDICTORS: Registry[type[Predictor]] = Registry("KNOW predictor", package="weightlab.know.predictors")


@dataclass
class TaskVectorOptions:
    lam: float = option(0.2, "scale of the extrapolated update (negative reverses the extrapolation)")


class Predictor(ABC):
    """Base class. Subclasses are registered in :data:`PREDICTORS` and implement :meth:`_predict_keys`."""

    @property
    def name(self) -> str:
        return type(self).registry_entry.name

    def __init__(self, kinds: str | Iterable[str] | None = None, **options) -> None:
        self.kinds = parse_kinds(kinds if kinds is None or isinstance(kinds, str) else list(kinds))
        self.opts = registered_options(type(self), options)

    # -- what a predictor needs and supports -------------------------------------------------
    def min_stages(self, step: int) -> int:
        """Stages of the trajectory needed to predict ``step`` steps back."""
        return 2

    def unsupported(self, step: int) -> str | None:
        """Why ``step`` cannot be predicted by this method (``None`` when it can)."""
        return None

    def options(self) -> dict:
        """The options as the prediction's record keeps them (default: every option, defaults included)."""
        return options_dict(self.opts)

    def describe(self, trajectory: Trajectory | None = None) -> dict:
        d = {"method": self.name, "options": self.options(), "kinds": list(self.kinds)}
        if trajectory is not None:
            keys = trajectory.keys_of(self.kinds)
            d["touched"] = trajectory.count_by_kind(keys)
            d["untouched"] = {k: v for k, v in trajectory.count_by_kind().items() if k not in d["touched"]}
        return d

    # -- prediction --------------------------------------------------------------------------
    def predict(self, trajectory: Trajectory, step: int = 1) -> dict[str, torch.Tensor]:
        return self.predict_steps(trajectory, [step])[step]

    def predict_steps(self, trajectory: Trajectory, steps: Iterable[int]) -> dict[int, dict[str, torch.Tensor]]:
        """Θ̂^{-k} for every ``k`` in ``steps`` (each a full state dict)."""
        steps = sorted(set(int(s) for s in steps))
        if not steps or steps[0] < 1:
            raise WeightlabError(f"prediction steps must be positive integers, got {steps}")
        for k in steps:
            reason = self.unsupported(k)
            if reason:
                raise WeightlabError(f"{self.name} cannot predict step {k}: {reason}")
            trajectory.require(self.min_stages(k), f"{self.name} (step {k})")
        keys = trajectory.keys_of(self.kinds)
        if not keys:
            raise WeightlabError(f"{self.name}: the trajectory has no parameters of kind(s) {', '.join(self.kinds)}")
        predicted = self._predict_keys(trajectory, keys, steps)
        out = {}
        predicted_keys = set(keys)
        for k in steps:  # copy only what is not predicted; predicted entries are new tensors already
            state = {name: v if name in predicted_keys else v.clone() for name, v in trajectory.stages[0].items()}
            for name in keys:
                # checked in the stored dtype: a float64 value beyond float32's range turns Inf when stored
                value = predicted[k][name].to(state[name].dtype)
                if not bool(torch.isfinite(value).all()):
                    dtype = str(value.dtype).replace("torch.", "")
                    raise WeightlabError(
                        f"{self.name} produced NaN/Inf for '{name}' at step {k} (in {dtype}; is a strength like "
                        "--lam far too large?)"
                    )
                state[name] = value.reshape(state[name].shape)
            out[k] = state
        return out

    @abstractmethod
    def _predict_keys(
        self, trajectory: Trajectory, keys: list[str], steps: list[int]
    ) -> dict[int, dict[str, torch.Tensor]]:
        """Predicted tensors for ``keys`` at each step."""


class TaskVectorMethod(Predictor):
    """Methods built on the task vectors ``τ_j = Θ⁰ − Θ^j``: step k uses ``τ_1 … τ_k`` (or τ_k alone)
    and scales the resulting update by ``lam`` (λ = 0.2 by default, as in the paper)."""

    @property
    def lam(self) -> float:
        return float(self.opts.lam)

    def min_stages(self, step: int) -> int:
        return step + 1


def task_vectors(trajectory: Trajectory, key: str, count: int) -> list[torch.Tensor]:
    """``[Θ⁰ − Θ¹, …, Θ⁰ − Θ^count]`` for one key, in float64."""
    theta0 = trajectory.stages[0][key].double()
    return [theta0 - trajectory.stages[j][key].double() for j in range(1, count + 1)]


def flat_sequences(
    trajectory: Trajectory, keys: list[str], stages: list[int], dtype=torch.float64, dim: int = 0
) -> torch.Tensor:
    """The chosen stages' values of ``keys``, flattened: ``(len(stages), N)`` (``dim=0``) or
    ``(N, len(stages))`` (``dim=1``, one row per scalar parameter, as KNOWN reads them)."""
    return torch.stack(
        [torch.cat([trajectory.stages[s][k].reshape(-1).to(dtype) for k in keys]) for s in stages], dim=dim
    )


def unflatten(flat: torch.Tensor, trajectory: Trajectory, keys: list[str]) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for k in keys:
        ref = trajectory.stages[0][k]
        out[k] = flat[start : start + ref.numel()].reshape(ref.shape)
        start += ref.numel()
    return out
