"""``torchunlearn.unlearn.trainers.standard``: :class:`funlearn.compat.trainers.Standard`."""

from funlearn.compat.trainers import Standard

__all__ = ["Standard"]
