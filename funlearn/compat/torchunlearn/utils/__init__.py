"""``torchunlearn.utils``: ``load_model`` and the ``data`` module."""

from funlearn.compat.robmodel import load_model
from funlearn.compat.torchunlearn.utils import data

__all__ = ["load_model", "data"]
