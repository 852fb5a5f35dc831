"""Shared helpers of the methods tests: a tiny MLP (with BatchNorm) and split batches, seeded locally."""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 5


def tiny_mlp(seed: int = 0, batch_norm: bool = True) -> nn.Module:
    """Flatten -> Linear(12, 16) [-> BatchNorm1d] -> ReLU -> Linear(16, 5), initialised from ``seed``.

    The first Linear has no bias before BatchNorm (which cancels it: its gradient would be rounding
    noise that Adam amplifies into chaotic, unreproducible updates).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = [nn.Flatten(), nn.Linear(12, 16, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(16))
        layers += [nn.ReLU(), nn.Linear(16, NUM_CLASSES)]
        return nn.Sequential(*layers)


def split_batches(n: int, seed: int = 0, forget_size: int = 6, retain_size: int = 10) -> list[dict]:
    """``n`` split batches ``{"forget": (x, y), "retain": (x, y)}`` of 1x3x4 inputs."""
    g = torch.Generator().manual_seed(seed)

    def part(size):
        return torch.randn(size, 1, 3, 4, generator=g), torch.randint(0, NUM_CLASSES, (size,), generator=g)

    return [{"forget": part(forget_size), "retain": part(retain_size)} for _ in range(n)]


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest absolute difference over the leaves of two trees with the same keys."""
    return max(float((a[k].detach() - b[k].detach()).abs().max()) for k in a)
