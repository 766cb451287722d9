"""A timm-style registry of the model families weightlab defines itself (one file per family)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn


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


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(name: str, *, family: str, mean, std, input_size, num_classes: int,
                   pretrained_file: str | None = None, aliases: tuple[str, ...] = ()):
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(name, fn, family, tuple(mean), tuple(std), tuple(input_size),
                                     num_classes, pretrained_file, tuple(aliases))
        for a in aliases:
            _ALIASES[a] = name
        return fn

    return deco


def get_entry(name: str) -> ModelEntry | None:
    return _REGISTRY.get(_ALIASES.get(name, name))


def list_registered() -> list[str]:
    return sorted(_REGISTRY)
