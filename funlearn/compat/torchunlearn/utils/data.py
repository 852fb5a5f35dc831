"""``torchunlearn.utils.data``: :mod:`funlearn.compat.data`."""

from funlearn.compat.data import MergedLoaders, UnlearnDataSetup

__all__ = ["UnlearnDataSetup", "MergedLoaders"]
