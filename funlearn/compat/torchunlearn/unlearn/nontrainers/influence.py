"""``torchunlearn.unlearn.nontrainers.influence``: :class:`funlearn.compat.nontrainers.Influence`."""

from funlearn.compat.nontrainers import Influence

__all__ = ["Influence"]
