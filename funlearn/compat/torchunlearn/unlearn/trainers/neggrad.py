"""``torchunlearn.unlearn.trainers.neggrad``: :class:`funlearn.compat.trainers.NegGrad`."""

from funlearn.compat.trainers import NegGrad

__all__ = ["NegGrad"]
