"""``torchunlearn.unlearn.trainers.badteacher``: :class:`funlearn.compat.trainers.BadTeacher`."""

from funlearn.compat.trainers import BadTeacher

__all__ = ["BadTeacher"]
