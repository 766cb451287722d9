"""The zoo of models weightlab defines itself (one file per family, timm's ``@register_model``),
on the one :class:`weightlab.registry.Registry` pattern."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from weightlab.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    family: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int, int]
    num_classes: int
    pretrained_file: str | None = None
    aliases: tuple[str, ...] = field(default=())


MODELS: Registry[ModelEntry] = Registry("weightlab model", package="weightlab.models")


def register_model(
    name: str,
    *,
    family: str,
    mean,
    std,
    input_size,
    num_classes: int,
    pretrained_file: str | None = None,
    aliases: tuple[str, ...] = (),
):
    """Register a model builder under ``name`` (its ``family`` must be a row of the family table)."""
    from weightlab.models.families import FAMILIES

    if family not in FAMILIES:
        raise ValueError(f"model '{name}': family '{family}' is not in weightlab.models.families.FAMILIES")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        entry = ModelEntry(
            name, fn, family, tuple(mean), tuple(std), tuple(input_size), num_classes, pretrained_file, tuple(aliases)
        )
        MODELS.add(name, entry, families=(family,), aliases=tuple(aliases), summary=(fn.__doc__ or name).strip())
        return fn

    return deco


def get_entry(name: str) -> ModelEntry | None:
    return MODELS.get(name) if name in MODELS else None


def list_registered() -> list[str]:
    return sorted(MODELS)
