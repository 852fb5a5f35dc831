"""``torchunlearn.unlearn.nontrainers.fisherforget``: :class:`funlearn.compat.nontrainers.FisherForget`."""

from funlearn.compat.nontrainers import FisherForget

__all__ = ["FisherForget"]
