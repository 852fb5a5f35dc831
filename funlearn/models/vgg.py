"""VGG-11/13/16/19 with BatchNorm (Simonyan & Zisserman, 2015) in the CIFAR form.

3x3 conv-BN-ReLU stacks separated by five 2x2 max-pools, then an adaptive average pool to 1x1 and a
single linear layer on the 512 features, so any input of at least 32x32 works. ``norm="group"``
swaps BatchNorm for GroupNorm.
"""

from __future__ import annotations

from torch import Tensor, nn

from funlearn.models.norm import Norm, norm_layer

__all__ = ["VGG", "vgg11", "vgg13", "vgg16", "vgg19"]

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool.
_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}  # fmt: skip


class VGG(nn.Module):
    """VGG conv stack from ``config`` (channel counts, "M" = max-pool), global pool, linear head."""

    def __init__(
        self,
        config: list[int | str],
        num_classes: int = 10,
        in_channels: int = 3,
        norm: Norm = "batch",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                conv = nn.Conv2d(channels, item, kernel_size=3, padding=1)
                layers += [conv, norm_layer(norm, item), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg11(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> VGG:
    """VGG-11 with BatchNorm (configuration A)."""
    return VGG(_CONFIGS["vgg11"], num_classes, in_channels, norm)


def vgg13(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> VGG:
    """VGG-13 with BatchNorm (configuration B)."""
    return VGG(_CONFIGS["vgg13"], num_classes, in_channels, norm)


def vgg16(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> VGG:
    """VGG-16 with BatchNorm (configuration D)."""
    return VGG(_CONFIGS["vgg16"], num_classes, in_channels, norm)


def vgg19(num_classes: int = 10, in_channels: int = 3, *, norm: Norm = "batch") -> VGG:
    """VGG-19 with BatchNorm (configuration E)."""
    return VGG(_CONFIGS["vgg19"], num_classes, in_channels, norm)
