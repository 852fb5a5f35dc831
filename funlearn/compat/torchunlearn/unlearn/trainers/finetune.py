"""``torchunlearn.unlearn.trainers.finetune``: :class:`funlearn.compat.trainers.Finetune`."""

from funlearn.compat.trainers import Finetune

__all__ = ["Finetune"]
