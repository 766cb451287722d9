"""ConvMixer (Trockman & Kolter 2022) as the plain ``nn.Sequential`` the shared weights were saved from.

``Conv2d(3, dim, p, stride=p) -> GELU -> BN``, then ``depth`` x
``[Residual(depthwise Conv2d(k, groups=dim, padding="same") -> GELU -> BN) -> pointwise Conv2d(1x1) -> GELU -> BN]``,
then ``AdaptiveAvgPool2d -> Flatten -> Linear``. Keys are the Sequential indices (``3.0.fn.0.weight`` ...).
"""

from __future__ import annotations

import torch
from torch import nn

from weightlab.models.registry import register_model

CONVMIXER_MEAN = (0.4914, 0.4822, 0.4465)
CONVMIXER_STD = (0.2023, 0.1994, 0.2010)


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class ConvMixer(nn.Sequential):
    def __init__(
        self,
        dim: int = 256,
        depth: int = 8,
        kernel_size: int = 9,
        patch_size: int = 4,
        num_classes: int = 10,
        in_chans: int = 3,
    ):
        blocks = [
            nn.Sequential(
                Residual(
                    nn.Sequential(
                        nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"),
                        nn.GELU(),
                        nn.BatchNorm2d(dim),
                    )
                ),
                nn.Conv2d(dim, dim, kernel_size=1),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            )
            for _ in range(depth)
        ]
        super().__init__(
            nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size),
            nn.GELU(),
            nn.BatchNorm2d(dim),
            *blocks,
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(dim, num_classes),
        )
        self.num_features = dim

    def get_classifier(self) -> nn.Module:
        return self[-1]


@register_model(
    "convmixer256_d8_k9_p4",
    family="convmixer",
    mean=CONVMIXER_MEAN,
    std=CONVMIXER_STD,
    input_size=(3, 32, 32),
    num_classes=10,
    pretrained_file="convmixer256_d8_k9_p4.safetensors",
    aliases=("convmixer",),
)
def convmixer256_d8_k9_p4(num_classes: int = 10, in_chans: int = 3) -> ConvMixer:
    """ConvMixer-256/8, kernel 9, patch 4, for 32x32 inputs."""
    return ConvMixer(256, 8, 9, 4, num_classes=num_classes, in_chans=in_chans)


@register_model(
    "convmixer64_d4_k5_p4",
    family="convmixer",
    mean=CONVMIXER_MEAN,
    std=CONVMIXER_STD,
    input_size=(3, 32, 32),
    num_classes=10,
)
def convmixer64_d4_k5_p4(num_classes: int = 10, in_chans: int = 3) -> ConvMixer:
    """A small ConvMixer for fast runs (no pretrained weights)."""
    return ConvMixer(64, 4, 5, 4, num_classes=num_classes, in_chans=in_chans)
