"""``torchunlearn.unlearn.trainers.l1sparse``: :class:`funlearn.compat.trainers.L1Sparse`."""

from funlearn.compat.trainers import L1Sparse

__all__ = ["L1Sparse"]
