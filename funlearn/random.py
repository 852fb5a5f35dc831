"""Explicit, splittable randomness: every random draw in funlearn takes a key derived here.

A key is a ``torch.Generator`` seeded by :func:`fold_in`, a pure function of a run seed and any
integers that identify the draw (epoch, step, batch, pass...). Two runs with the same seed make the
same draws, a resumed run can recreate the draws of step k without replaying steps 0..k-1, and the
global RNG (``torch.manual_seed``) is never read or written.
"""

from __future__ import annotations

import torch

__all__ = ["fold_in", "key"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def fold_in(seed: int, *data: int) -> int:
    """Mix integers into a seed: ``h = splitmix64(splitmix64(h) ^ d)`` for each d, in order.

    Returns a non-negative 63-bit integer suitable for ``torch.Generator.manual_seed``. Distinct
    ``data`` give statistically independent seeds; the same inputs always give the same output.
    """
    h = _splitmix64(int(seed) & _MASK64)
    for d in data:
        h = _splitmix64(_splitmix64(h) ^ (int(d) & _MASK64))
    return h & ((1 << 63) - 1)


def key(seed: int, *data: int, device: torch.device | str | None = None) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``fold_in(seed, *data)``."""
    gen = torch.Generator(device=device if device is not None else "cpu")
    gen.manual_seed(fold_in(seed, *data))
    return gen
