"""Where each adapter goes, per model family (regular expressions, full match on module names)."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.errors import WeightlabError

# "lowrank": LoRA / DoRA / RoSA placement. ViT: the fused qkv (MeLo adapts q and v; timm fuses q, k, v
# into one Linear, and PEFT adapts whole modules, so k is adapted too). CNNs: the 3x3 convs of every
# residual block (CIFAR ResNets) / the pointwise convs (ConvMixer; LoRA on a depthwise conv is not a
# low-rank update).
LOWRANK = {
    "vit": r"blocks\.\d+\.attn\.qkv",
    "cifar_resnet": r"layer\d+\.\d+\.conv[12]",
    "resnet": r"layer\d+\.\d+\.conv[123]",
    "convmixer": r"\d+\.1",
}
MLP = {"vit": r"blocks\.\d+\.mlp"}


def family_pattern(table: dict[str, str], family: str, what: str) -> str:
    if family not in table:
        raise WeightlabError(f"{what} has no default placement for model family '{family}' "
                             f"(supported: {', '.join(table)}); pass target modules explicitly")
    return table[family]


def matching_modules(model: nn.Module, pattern: str, types: tuple[type, ...] | None = None) -> list[str]:
    rx = re.compile(pattern)
    names = [n for n, m in model.named_modules() if n and rx.fullmatch(n) and (types is None or isinstance(m, types))]
    if not names:
        raise WeightlabError(f"no module matches '{pattern}'")
    return names


def weight_layers(model: nn.Module) -> list[str]:
    """Every Linear / Conv2d (RECAST layers included), outermost wrappers excluded."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and n
            and ".lora_" not in n and not n.endswith(("base_layer", ".ghost"))]


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def forward_with_weight(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Run a Linear / Conv2d layer (its bias, stride, ...) with another weight."""
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, weight, layer.bias)
