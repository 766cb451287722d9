"""MobileNet- and DenseNet-style networks for small images, for the KNOW paper's meta-data mix
("small CNNs, ResNets, MobileNet-style and DenseNet-style networks under 3M parameters").

* ``mobilenet_tiny``: a stem conv, then inverted-residual blocks (1x1 expand, 3x3 depthwise, 1x1
  project, a residual where shapes agree; MobileNetV2), BatchNorm and ReLU6 throughout.
* ``densenet_tiny``: a stem conv, then dense blocks of BN-ReLU-Conv3x3 layers whose outputs are
  concatenated (growth rate k), with 1x1 transition convs and average pooling between blocks (DenseNet-BC
  without the bottleneck).

Both take any input channels and resolution (global average pooling before the classifier).
"""

from __future__ import annotations

import torch
from torch import nn

from weightlab.models.registry import register_model


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.block = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetTiny(nn.Module):
    # (output channels, stride, expansion) per block
    BLOCKS = ((16, 1, 1), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4), (64, 2, 4))

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: float = 1.0, blocks=BLOCKS):
        super().__init__()
        c = max(8, int(16 * width))
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU6(inplace=True),
        ]
        for out, stride, expand in blocks:
            out = max(8, int(out * width))
            layers.append(InvertedResidual(c, out, stride, expand))
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(torch.relu(self.norm(x)))], dim=1)


class DenseNetTiny(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, growth: int = 12, layers: tuple[int, ...] = (4, 4, 4)):
        super().__init__()
        c = 2 * growth
        mods: list[nn.Module] = [nn.Conv2d(in_chans, c, 3, padding=1, bias=False)]
        for i, n in enumerate(layers):
            for _ in range(n):
                mods.append(DenseLayer(c, growth))
                c += growth
            if i < len(layers) - 1:  # transition: halve the channels and the resolution
                mods += [
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c, c // 2, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
                c //= 2
        mods += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


_STATS = dict(family="tiny_nets", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 32, 32))


@register_model("mobilenet_tiny", num_classes=10, **_STATS)
def mobilenet_tiny(num_classes: int = 10, **kwargs) -> MobileNetTiny:
    """MobileNetV2-style inverted residuals for small images (about 42k parameters at width 1)."""
    return MobileNetTiny(num_classes=num_classes, **kwargs)


@register_model("densenet_tiny", num_classes=10, **_STATS)
def densenet_tiny(num_classes: int = 10, **kwargs) -> DenseNetTiny:
    """DenseNet-style dense blocks (growth 12, 3 blocks of 4 layers; about 77k parameters) for small images."""
    return DenseNetTiny(num_classes=num_classes, **kwargs)
