"""AdaptFormer (Chen et al. 2022): a bottleneck (d -> b, ReLU, b -> d, times a scale) parallel to each
transformer MLP, fed the MLP's input. Defaults from the authors' RECAST combination: b=2, scale 2."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from weightlab.incremental.methods.base import ADAPTERS, Adapter
from weightlab.incremental.methods.targets import matching_modules
from weightlab.models import set_submodule
from weightlab.registry import option


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


@dataclass
class AdaptFormerOptions:
    bottleneck: int = option(2, "bottleneck width b", minimum=1)
    scale: float = option(2.0, "scale of the adapter branch")
    targets: str | None = option(None, "regular expression of the MLPs to adapt (default: the family's)")


@ADAPTERS.register("adaptformer", display="AdaptFormer", paper="Chen et al. 2022", options=AdaptFormerOptions)
class AdaptFormerAdapter(Adapter):
    """AdaptFormer: a bottleneck branch parallel to each transformer MLP."""

    placement = "mlp"
    mergeable = False

    def applies_to(self, family):
        if not family.tokens:  # the branch reads token features: transformer families only
            return f"adaptformer does not apply to model family '{family.name}' (transformer families only)"
        return super().applies_to(family)

    def inject(self, backbone: nn.Module, family) -> None:
        for name in matching_modules(backbone, self.pattern(family)):
            mlp = backbone.get_submodule(name)
            dim = next(m for m in mlp.modules() if isinstance(m, nn.Linear)).in_features
            set_submodule(backbone, name, ParallelAdapterMLP(mlp, dim, self.opts.bottleneck, self.opts.scale))

    def is_trainable(self, name: str) -> bool:
        return ".adaptformer_" in name
