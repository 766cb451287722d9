"""AdaptFormer (Chen et al. 2022): a bottleneck (d -> b, ReLU, b -> d, times a scale) parallel to each
transformer MLP, fed the MLP's input. Defaults from the authors' RECAST combination: b=2, scale 2."""

from __future__ import annotations

import math

import torch
from torch import nn

from weightlab.incremental.methods.base import Adapter
from weightlab.incremental.methods.targets import (
    MLP,
    family_pattern,
    matching_modules,
    set_submodule,
)


class ParallelAdapterMLP(nn.Module):
    def __init__(self, mlp: nn.Module, dim: int, bottleneck: int, scale: float):
        super().__init__()
        self.base_layer = mlp
        self.adaptformer_down = nn.Linear(dim, bottleneck)
        self.adaptformer_up = nn.Linear(bottleneck, dim)
        self.scale = scale
        nn.init.kaiming_uniform_(self.adaptformer_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.adaptformer_down.bias)
        nn.init.zeros_(self.adaptformer_up.weight)  # starts as the identity change
        nn.init.zeros_(self.adaptformer_up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.scale * self.adaptformer_up(torch.relu(self.adaptformer_down(x)))


class AdaptFormerAdapter(Adapter):
    name = "adaptformer"
    families = ("vit",)
    mergeable = False

    def __init__(self, bottleneck: int = 2, scale: float = 2.0, targets: str | None = None):
        super().__init__(bottleneck=bottleneck, scale=scale, targets=targets)
        self.bottleneck, self.scale, self.targets = bottleneck, scale, targets

    def inject(self, backbone: nn.Module, family: str) -> None:
        for name in matching_modules(backbone, self.targets or family_pattern(MLP, family, self.name)):
            mlp = backbone.get_submodule(name)
            dim = next(m for m in mlp.modules() if isinstance(m, nn.Linear)).in_features
            set_submodule(backbone, name, ParallelAdapterMLP(mlp, dim, self.bottleneck, self.scale))

    def is_trainable(self, name: str) -> bool:
        return ".adaptformer_" in name
