"""CLR, channel-wise lightweight reprogramming (Ge et al. 2023): a depthwise 3x3 conv, initialised to
the identity (dirac), after every conv: Y = Ghost(Conv(X, W)) (Eq. 7 with W = W_RECAST)."""

from __future__ import annotations

import torch
from torch import nn

from weightlab.incremental.methods.base import ADAPTERS, Adapter
from weightlab.incremental.methods.targets import matching_modules
from weightlab.models import set_submodule


class ReprogrammedConv(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.base_layer = conv
        c = conv.out_channels
        self.ghost = nn.Conv2d(
            c, c, 3, padding=1, groups=c, bias=False, device=conv.weight.device, dtype=conv.weight.dtype
        )
        nn.init.dirac_(self.ghost.weight, groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost(self.base_layer(x))


@ADAPTERS.register("clr", display="CLR", paper="Ge et al. 2023")
class CLRAdapter(Adapter):
    """CLR: an identity-initialised depthwise 3x3 conv after every conv of a convolutional network."""

    placement = "reprogram"
    mergeable = False

    def inject(self, backbone: nn.Module, family) -> None:
        for name in matching_modules(backbone, self.pattern(family), (nn.Conv2d,)):
            set_submodule(backbone, name, ReprogrammedConv(backbone.get_submodule(name)))

    def is_trainable(self, name: str) -> bool:
        return ".ghost." in name or name.startswith("ghost.")
