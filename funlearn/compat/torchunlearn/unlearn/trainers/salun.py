"""``torchunlearn.unlearn.trainers.salun``: :class:`funlearn.compat.trainers.SalUn`."""

from funlearn.compat.trainers import SalUn

__all__ = ["SalUn"]
