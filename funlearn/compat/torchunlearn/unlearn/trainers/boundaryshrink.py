"""``torchunlearn.unlearn.trainers.boundaryshrink``: :class:`funlearn.compat.trainers.BoundaryShrink`."""

from funlearn.compat.trainers import BoundaryShrink

__all__ = ["BoundaryShrink"]
