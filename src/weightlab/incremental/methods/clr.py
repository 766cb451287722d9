"""CLR, channel-wise lightweight reprogramming (Ge et al. 2023): a depthwise 3x3 conv, initialised to
the identity (dirac), after every conv: Y = Ghost(Conv(X, W)) (Eq. 7 with W = W_RECAST)."""

from __future__ import annotations

import torch
from torch import nn

from weightlab.incremental.methods.base import Adapter
from weightlab.incremental.methods.targets import set_submodule


class ReprogrammedConv(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.base_layer = conv
        c = conv.out_channels
        self.ghost = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False,
                               device=conv.weight.device, dtype=conv.weight.dtype)
        nn.init.dirac_(self.ghost.weight, groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost(self.base_layer(x))


class CLRAdapter(Adapter):
    name = "clr"
    families = ("cifar_resnet", "resnet", "convmixer")
    mergeable = False

    def inject(self, backbone: nn.Module, family: str) -> None:
        names = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d) and n]
        for name in names:
            set_submodule(backbone, name, ReprogrammedConv(backbone.get_submodule(name)))

    def is_trainable(self, name: str) -> bool:
        return ".ghost." in name or name.startswith("ghost.")
