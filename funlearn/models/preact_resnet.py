"""Pre-activation ResNet-18 (He et al., 2016, "Identity Mappings in Deep Residual Networks").

CIFAR layout as in kuangliu/pytorch-cifar (3x3 stem, no max-pool, stages of 64/128/256/512 planes),
with the paper's final BN-ReLU before global average pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from funlearn.models.norm import Norm, norm_layer
from funlearn.models.resnet import make_stages

__all__ = ["PreActBlock", "PreActResNet", "preact_resnet18"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, dropout, BN-ReLU-conv3x3; the shortcut is the identity, or a strided 1x1
    conv of the first activation when the shape changes."""

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        norm: Norm = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(norm, in_planes)
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.dropout = nn.Dropout(dropout)
        self.bn2 = norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)
            if stride != 1 or in_planes != planes
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.dropout(self.conv1(out))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """CIFAR pre-activation ResNet: 3x3 stem, four stages of :class:`PreActBlock`, BN-ReLU, global
    average pool, linear head."""

    def __init__(
        self,
        num_blocks: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        norm: Norm = "batch",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1, bias=False)
        stages = make_stages(PreActBlock, num_blocks, norm)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = norm_layer(norm, 512)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = F.relu(self.bn(out))
        return self.linear(self.pool(out).flatten(1))


def preact_resnet18(
    num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch"
) -> PreActResNet:
    """PreAct ResNet-18 (PRN18): pre-activation blocks [2, 2, 2, 2]."""
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels, norm)
