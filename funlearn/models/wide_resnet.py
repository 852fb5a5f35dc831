"""Wide ResNets (Zagoruyko & Komodakis, 2016) for CIFAR-sized inputs.

WRN-d-k: a 3x3 16-channel stem, three stages of (d - 4) / 6 pre-activation blocks with 16k, 32k and
64k channels (strides 1, 2, 2), a final BN-ReLU, global average pooling and a linear head.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from funlearn.models.norm import Norm, norm_layer
from funlearn.models.preact_resnet import PreActBlock

__all__ = ["WideResNet", "wide_resnet28_10"]


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` built from :class:`PreActBlock` with dropout between convs."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        dropout: float = 0.0,
        norm: Norm = "batch",
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False)
        stages = []
        in_planes = 16
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        for planes, stride in zip(widths, (1, 2, 2), strict=True):
            layers = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layers.append(PreActBlock(in_planes, planes, block_stride, norm, dropout))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = norm_layer(norm, in_planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.linear(self.pool(out).flatten(1))


def wide_resnet28_10(
    num_classes: int = 10, in_channels: int = 3, *, dropout: float = 0.0, norm: Norm = "batch"
) -> WideResNet:
    """WRN-28-10: 4 blocks per stage, 160/320/640 channels; 36.5M parameters for 10 classes."""
    return WideResNet(28, 10, num_classes, in_channels, dropout=dropout, norm=norm)
