"""A plain MLP: flatten, hidden Linear + ReLU layers, classifier. One of the KNOW meta-data
collection's small networks (no convolutions: its rows are FC and Bias only)."""

from __future__ import annotations

import math

import torch
from torch import nn

from weightlab.models.registry import register_model


class MLP(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        input_size: tuple[int, int, int] = (3, 32, 32),
        hidden: tuple[int, ...] = (256, 128),
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = math.prod(input_size)
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
            d = h
        self.features = nn.Sequential(*layers)
        self.num_features = d
        self.head = nn.Linear(d, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model(
    "mlp", family="mlp", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 32, 32), num_classes=10
)
def mlp(num_classes: int = 10, input_size=(3, 32, 32), **kwargs) -> MLP:
    return MLP(num_classes=num_classes, input_size=tuple(input_size), **kwargs)
