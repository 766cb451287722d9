"""Finding the modules an adapter goes on, and running a layer with another weight."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.errors import WeightlabError


def matching_modules(model: nn.Module, pattern: str, types: tuple[type, ...] | None = None) -> list[str]:
    rx = re.compile(pattern)
    names = [n for n, m in model.named_modules() if n and rx.fullmatch(n) and (types is None or isinstance(m, types))]
    if not names:
        raise WeightlabError(f"no module matches '{pattern}'")
    return names


def weight_layers(model: nn.Module) -> list[str]:
    """Every Linear / Conv2d (RECAST layers included), outermost wrappers excluded."""
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
        and n
        and ".lora_" not in n
        and not n.endswith(("base_layer", ".ghost"))
    ]


def forward_with_weight(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Run a Linear / Conv2d layer (its bias, stride, ...) with another weight."""
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, weight, layer.bias)
