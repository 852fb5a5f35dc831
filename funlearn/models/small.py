"""Small networks for MNIST-sized inputs: a two-layer CNN, LeNet-5 and a multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["SmallCNN", "LeNet", "MLP"]


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (32 and 64 channels) with ReLU and 2x2 max-pooling, then a linear head.

    An adaptive average pool to ``pool_size`` x ``pool_size`` sits before the head, so the same
    weights serve 8x8 ``digits``, 28x28 MNIST and 32x32 CIFAR inputs (anything from 4x4 up).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        *,
        channels: tuple[int, int] = (32, 64),
        pool_size: int = 4,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(pool_size),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(c2 * pool_size * pool_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    """LeNet-5 (LeCun et al., 1998), with ReLU and max-pooling: conv5x5(6)-pool-conv5x5(16)-pool,
    then fully connected layers of 120 and 84 units.

    The first conv is padded, as usual for 28x28 MNIST; ``image_size`` (at least 12) sets the
    flattened feature size, 16x5x5 for 28x28 inputs.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        if image_size < 12:
            raise ValueError(f"LeNet needs images of at least 12x12, got {image_size}")
        side = (image_size // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Multilayer perceptron: flattens the input, then Linear-ReLU per hidden size, linear head."""

    def __init__(
        self, in_features: int, num_classes: int = 10, hidden_sizes: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
