"""Normalisation layers selectable by name, shared by the convolutional models.

``"batch"`` is BatchNorm; ``"group"`` is GroupNorm (Wu & He, 2018), which keeps no running
statistics and treats every sample independently, so per-sample gradients under ``vmap`` are exact.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

__all__ = ["Norm", "norm_layer"]

Norm = Literal["batch", "group"]

_GROUPS = 32


def norm_layer(norm: Norm, num_channels: int) -> nn.Module:
    """Return a 2-d normalisation layer over ``num_channels`` channels.

    GroupNorm uses 32 groups, or the largest divisor of 32 that divides ``num_channels``.
    """
    if norm == "batch":
        return nn.BatchNorm2d(num_channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(_GROUPS, num_channels), num_channels)
    raise ValueError(f"unknown norm {norm!r}; expected 'batch' or 'group'")
