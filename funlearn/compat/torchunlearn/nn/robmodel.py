"""``torchunlearn.nn.robmodel``: :class:`funlearn.compat.robmodel.RobModel`."""

from funlearn.compat.robmodel import RobModel

__all__ = ["RobModel"]
