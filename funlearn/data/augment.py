"""Vectorised standard augmentation: random crop with zero padding, then horizontal flip.

For a batch ``x`` of shape ``(B, C, H, W)``, padding ``p``, offsets ``(r_b, c_b)`` in ``[0, 2p]``
and flips ``f_b``::

    out[b, :, i, j] = pad(x)[b, :, r_b + i, c_b + (W - 1 - j if f_b else j)]

which is torchvision's ``RandomCrop(H, padding=p)`` followed by ``RandomHorizontalFlip()``, done
for the whole batch with one ``gather`` (no per-sample Python work). Works on uint8 and float.

The parameters of a batch are drawn for the whole global batch (all ranks) from its own generator
``key(seed, Stream.AUGMENT, *epoch, pass, b)``; each rank takes every ``world_size``-th row, as it
does with the samples (see :mod:`funlearn.data.sampling`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from funlearn.data.streams import Stream
from funlearn.random import key

__all__ = ["PADDING", "crop_flip", "crop_flip_params"]

PADDING = 4  # the standard CIFAR/TinyImageNet recipe: RandomCrop(size, padding=4)


def crop_flip_params(
    seed: int, batch_key: tuple[int, ...], global_size: int, padding: int, rank: int = 0, world_size: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's offsets ``(B, 2)`` int64 uniform in ``[0, 2p]`` and flips ``(B,)`` bool (CPU).

    ``batch_key`` is ``(*epoch, pass, batch)``; the draw covers the ``global_size`` samples of the
    global batch and does not depend on any other batch.
    """
    gen = key(seed, Stream.AUGMENT, *batch_key)
    offsets = torch.randint(0, 2 * padding + 1, (global_size, 2), generator=gen)
    flips = torch.rand(global_size, generator=gen) < 0.5
    return offsets[rank::world_size], flips[rank::world_size]


def crop_flip(
    x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int = PADDING
) -> torch.Tensor:
    """Crop each zero-padded image of ``x`` (B, C, H, W) at ``offsets`` (B, 2) and flip where ``flips``."""
    b, c, h, w = x.shape
    wp = w + 2 * padding
    padded = F.pad(x, (padding, padding, padding, padding)).reshape(b, c, (h + 2 * padding) * wp)
    offsets = offsets.to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    j = torch.arange(w, device=x.device)
    cols = offsets[:, 1:] + torch.where(flips.to(x.device)[:, None], w - 1 - j, j)  # (B, W)
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.gather(2, flat).reshape(b, c, h, w)
