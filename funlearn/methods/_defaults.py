"""The presets' shared default: the optimizer of the unlearning literature, and tx validation."""

from __future__ import annotations

from funlearn.transforms.base import GradientTransformation
from funlearn.transforms.optim import sgd
from funlearn.transforms.schedules import Schedule


def literature_sgd(learning_rate: float | Schedule) -> GradientTransformation:
    """``sgd(learning_rate, momentum=0.9, weight_decay=5e-4)``: the optimizer of Jia et al. (NeurIPS 2023),
    Fan et al. (ICLR 2024) and torchunlearn's benchmark protocol."""
    return sgd(learning_rate, 0.9, weight_decay=5e-4)


def resolve_tx(tx: GradientTransformation | None, default: GradientTransformation) -> GradientTransformation:
    """``tx``, or ``default`` when it is None; a clear error for anything that is not a transformation."""
    if tx is None:
        return default
    if not isinstance(tx, GradientTransformation):
        raise TypeError(
            f"tx must be a GradientTransformation (e.g. funlearn.sgd(0.01, 0.9)), got {type(tx).__name__}"
        )
    return tx


def check_temperature(temperature: float) -> None:
    """Distillation temperatures must be positive."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
