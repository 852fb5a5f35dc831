"""``torchunlearn.unlearn.trainers.randomlabel``: :class:`funlearn.compat.trainers.RandomLabel`."""

from funlearn.compat.trainers import RandomLabel

__all__ = ["RandomLabel"]
