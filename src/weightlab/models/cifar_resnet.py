"""CIFAR ResNet-20/32/44/56 (He et al. 2016, Sec. 4.2), matching the shared pretrained state dicts.

Three stages of 16/32/64 channels, ``n`` BasicBlocks each, 3x3 convs without bias, and the
parameter-free "option A" shortcut: subsample with stride 2 and zero-pad the channels.
Key names: ``conv1``, ``bn1``, ``layer{1,2,3}.{i}.conv1/bn1/conv2/bn2``, ``linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.models.registry import register_model

CIFAR_RESNET_MEAN = (0.485, 0.456, 0.406)
CIFAR_RESNET_STD = (0.229, 0.224, 0.225)


class _ShortcutA(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero channel padding (no parameters)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _ShortcutA(planes // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64), start=1):
            layers = []
            for i in range(blocks_per_stage):
                stride = 2 if (stage > 1 and i == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.linear = nn.Linear(64, num_classes)
        self.num_features = 64
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.linear


def _make(depth: int):
    n = (depth - 2) // 6

    def factory(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
        return CifarResNet(n, num_classes=num_classes, in_chans=in_chans)

    factory.__doc__ = f"CIFAR ResNet-{depth}: {n} BasicBlocks per stage."
    return factory


for _depth in (20, 32, 44, 56):
    register_model(
        f"resnet{_depth}",
        family="cifar_resnet",
        mean=CIFAR_RESNET_MEAN,
        std=CIFAR_RESNET_STD,
        input_size=(3, 32, 32),
        num_classes=10,
        pretrained_file=f"resnet{_depth}.safetensors",
        aliases=(f"cifar_resnet{_depth}",),
    )(_make(_depth))

# A small member of the family for fast runs (quickstart, tests); no pretrained weights.
register_model(
    "resnet8",
    family="cifar_resnet",
    mean=CIFAR_RESNET_MEAN,
    std=CIFAR_RESNET_STD,
    input_size=(3, 32, 32),
    num_classes=10,
)(_make(8))
