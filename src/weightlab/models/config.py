"""A model's typed configuration (timm's ``PretrainedCfg`` in spirit): how it was built, which family
it belongs to, and the input it expects. It travels with the model as ``model.weightlab_cfg`` and is
stored in JSON (artifact, trajectory and report files) as :meth:`ModelCfg.to_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from weightlab.errors import WeightlabError


@dataclass(frozen=True)
class ModelCfg:
    """What weightlab knows about a model it built.

    Attributes:
        name: the name to rebuild it with (``resnet20``, a timm name, ``tv:resnet18``).
        source: ``weightlab`` (the zoo), ``timm``, ``torchvision`` or ``python`` (``package.module:factory``).
        family: the key of its row in :data:`weightlab.models.families.FAMILIES`.
        mean, std: the input normalisation it was trained with.
        input_size: ``(C, H, W)`` it expects.
        num_classes: classifier outputs.
        kwargs: the extra keyword arguments it was built with.
    """

    name: str
    source: str
    family: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))
        object.__setattr__(self, "input_size", tuple(self.input_size))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists for tuples), as artifacts, trajectories and reports store it."""
        return dict(
            name=self.name,
            source=self.source,
            family=self.family,
            mean=list(self.mean),
            std=list(self.std),
            input_size=list(self.input_size),
            num_classes=self.num_classes,
            kwargs=dict(self.kwargs),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | ModelCfg) -> ModelCfg:
        if isinstance(d, ModelCfg):
            return d
        if not isinstance(d, dict):
            raise WeightlabError(f"a model configuration must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in names if n not in d and n != "kwargs"]
        if missing:
            raise WeightlabError(f"model configuration lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes: Any) -> ModelCfg:
        return dataclasses.replace(self, **changes)


def model_cfg(model: nn.Module, what: str = "this step") -> ModelCfg:
    """The :class:`ModelCfg` a model made by :func:`weightlab.models.create_model` carries."""
    cfg = getattr(model, "weightlab_cfg", None)
    if cfg is None:
        raise WeightlabError(f"{what} needs a model made by weightlab.models.create_model (it carries weightlab_cfg)")
    return ModelCfg.from_dict(cfg)


def attach_cfg(model: nn.Module, cfg: ModelCfg | dict) -> nn.Module:
    """Set ``model.weightlab_cfg`` (the one place it is set); returns the model."""
    model.weightlab_cfg = ModelCfg.from_dict(cfg)
    return model


__all__ = ["ModelCfg", "model_cfg", "attach_cfg"]
