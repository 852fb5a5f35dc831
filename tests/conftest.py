"""Shared test fixtures: small deterministic models and data, built without the global RNG."""

from __future__ import annotations

import os

# Spin-waiting OpenMP threads made small-op loops 40-100x slower on a busy 2-core machine; this must
# be set before torch loads the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn

torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_cnn(seed: int = 0, norm: str = "batch", num_classes: int = 10) -> nn.Module:
    """A small CNN for 1x28x28 inputs (conv-norm-relu-pool x2, linear), seeded locally.

    Convolutions before BatchNorm have no bias (as in ResNets): BatchNorm cancels such a bias, so its
    gradient is pure rounding noise that adaptive optimizers would amplify into chaotic updates.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        norm_layer = (lambda c: nn.BatchNorm2d(c)) if norm == "batch" else (lambda c: nn.GroupNorm(2, c))
        bias = norm != "batch"
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=bias),
            norm_layer(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=bias),
            norm_layer(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64, num_classes),
        )


@pytest.fixture
def cnn() -> nn.Module:
    return make_cnn()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
