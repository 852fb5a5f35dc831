"""Finetune: keep training on the retained data only (the baseline)."""

from __future__ import annotations

from funlearn.methods._defaults import literature_sgd, resolve_tx
from funlearn.methods.base import Method, gradient_method
from funlearn.methods.objectives import retain_ce
from funlearn.model import FunctionalModel
from funlearn.transforms.base import GradientTransformation

__all__ = ["finetune"]


def finetune(model: FunctionalModel, tx: GradientTransformation | None = None) -> Method:
    """``L = mean_R CE(f_θ(x_r), y_r)``, one train-mode forward on the retain batch per step.

    Default ``tx``: ``sgd(0.01, momentum=0.9, weight_decay=5e-4)`` (FT in Jia et al., NeurIPS 2023:
    10 epochs at lr 0.01; torchunlearn's protocol). The forget batch, if any, is not read.
    """
    return gradient_method(retain_ce(model), resolve_tx(tx, literature_sgd(0.01)))
