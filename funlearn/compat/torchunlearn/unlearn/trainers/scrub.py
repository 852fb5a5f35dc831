"""``torchunlearn.unlearn.trainers.scrub``: :class:`funlearn.compat.trainers.SCRUB`."""

from funlearn.compat.trainers import SCRUB

__all__ = ["SCRUB"]
