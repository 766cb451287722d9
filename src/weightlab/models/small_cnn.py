"""The small CNN of the KNOW authors' meta-data collection: 4 convs of 8/16/32/32 channels,
then Dense(64) and the classifier. BatchNorm after each conv (``norm=False`` drops it).

Cheap enough to pretrain, forget and transfer on two CPU cores in seconds.
"""

from __future__ import annotations

import torch
from torch import nn

from weightlab.models.registry import register_model


class SmallCNN(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple[int, ...] = (8, 16, 32, 32),
        hidden: int = 64,
        norm: bool = True,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.ReLU(inplace=True))
            if 0 < i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, hidden)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(hidden, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(self.pool(self.features(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@register_model(
    "smallcnn", family="small_cnn", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 32, 32), num_classes=10
)
def smallcnn(num_classes: int = 10, **kwargs) -> SmallCNN:
    return SmallCNN(num_classes=num_classes, **kwargs)
