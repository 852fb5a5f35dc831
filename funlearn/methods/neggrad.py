"""NegGrad (gradient ascent on the forget set) and NegGrad+ (ascent on forget, descent on retain)."""

from __future__ import annotations

from funlearn.methods._defaults import literature_sgd, resolve_tx
from funlearn.methods.base import Method, gradient_method
from funlearn.methods.objectives import forget_ce, negate, retain_ce, weighted_sum
from funlearn.model import FunctionalModel
from funlearn.transforms.base import GradientTransformation

__all__ = ["neggrad", "neggrad_plus"]


DEFAULT_CEILING = 5.0
"""The forget cross-entropy at which ascent stops by default: ``p_y = e^-5 ≈ 0.7%``, below chance
for up to 100 classes. ``ceiling=None`` gives the papers' unbounded ascent (which collapses models:
torchunlearn's NegGrad reaches chance accuracy on every split, defect T2)."""


def neggrad(
    model: FunctionalModel, tx: GradientTransformation | None = None, *, ceiling: float | None = DEFAULT_CEILING
) -> Method:
    """``L = -min(mean_F CE(f_θ(x_f), y_f), ceiling)``: gradient ascent on the forget split only.

    GA in Thudi et al. (2022) and Jia et al. (NeurIPS 2023). ``ceiling`` (default 5.0; None for the
    papers' unbounded ascent) stops the ascent while the batch forget loss exceeds it (see
    :func:`negate`). Default ``tx``: ``sgd(1e-4, momentum=0.9, weight_decay=5e-4)`` (Jia et al.: 5
    epochs at lr 1e-4).
    """
    return gradient_method(negate(forget_ce(model), ceiling=ceiling), resolve_tx(tx, literature_sgd(1e-4)))


def neggrad_plus(
    model: FunctionalModel,
    tx: GradientTransformation | None = None,
    *,
    retain_weight: float = 0.9,
    ceiling: float | None = DEFAULT_CEILING,
) -> Method:
    """``L = β mean_R CE(x_r, y_r) - (1 - β) min(mean_F CE(x_f, y_f), ceiling)`` with ``β = retain_weight``.

    NegGrad+ (Kurmanji et al., NeurIPS 2023), the baseline Deep Unlearn recommends tuning. Separate
    train-mode forwards, retain then forget. Defaults: ``β = 0.9``, ``ceiling = 5.0`` (None: the
    paper's unbounded ascent, which collapsed the retain accuracy from 86% to 21% in 100 steps of
    our Fashion-MNIST test), ``tx = sgd(0.01, momentum=0.9, weight_decay=5e-4)``.
    """
    if not 0.0 < retain_weight < 1.0:
        raise ValueError(f"retain_weight must be in (0, 1) (β of β L_R - (1-β) L_F), got {retain_weight}")
    objective = weighted_sum(
        (retain_weight, retain_ce(model)),
        (1.0 - retain_weight, negate(forget_ce(model), ceiling=ceiling)),
    )
    return gradient_method(objective, resolve_tx(tx, literature_sgd(0.01)))
