"""ResNets in the CIFAR variant of kuangliu/pytorch-cifar (He et al., 2016).

A 3x3 stride-1 stem with no max-pool, four stages of 64/128/256/512 planes (strides 1, 2, 2, 2),
global average pooling and a linear head. ResNet-10/18/34 use :class:`BasicBlock`, ResNet-50 uses
:class:`Bottleneck`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from funlearn.models.norm import Norm, norm_layer

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet10", "resnet18", "resnet34", "resnet50"]


def _shortcut(in_planes: int, out_planes: int, stride: int, norm: Norm) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 projection with normalisation."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        norm_layer(norm, out_planes),
    )


def make_stages(
    block: type[nn.Module], num_blocks: Sequence[int], norm: Norm
) -> list[nn.Sequential]:
    """The four residual stages of 64/128/256/512 planes after a 64-channel stem.

    The first block of each stage after the first has stride 2; ``block(in_planes, planes, stride,
    norm)`` outputs ``planes * block.expansion`` channels.
    """
    stages = []
    in_planes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True)):
        layers = []
        for stride in [1 if i == 0 else 2] + [1] * (blocks - 1):
            layers.append(block(in_planes, planes, stride, norm))
            in_planes = planes * block.expansion
        stages.append(nn.Sequential(*layers))
    return stages


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (He et al., 2016); outputs ``planes`` channels."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm: Norm = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = norm_layer(norm, planes)
        self.shortcut = _shortcut(in_planes, planes, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by 4 with a residual connection (He et al., 2016)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm: Norm = "batch") -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = norm_layer(norm, planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = norm_layer(norm, out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem, four residual stages, global average pool, linear head."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        num_blocks: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        norm: Norm = "batch",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = norm_layer(norm, 64)
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(block, num_blocks, norm)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.pool(out).flatten(1))


def resnet10(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> ResNet:
    """ResNet-10: basic blocks [1, 1, 1, 1]."""
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes, in_channels, norm)


def resnet18(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11.2M parameters for 10 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, norm)


def resnet34(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, norm)


def resnet50(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; 23.5M parameters for 10 classes."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, norm)
