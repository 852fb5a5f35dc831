"""``torchunlearn.nn``."""

from funlearn.compat.torchunlearn.nn.robmodel import RobModel

__all__ = ["RobModel"]
