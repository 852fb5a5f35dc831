"""RandomLabel: fine-tune on the forget split with random labels, and on the retain split."""

from __future__ import annotations

from funlearn.methods._defaults import literature_sgd, resolve_tx
from funlearn.methods.base import Method, Objective, gradient_method
from funlearn.methods.objectives import forget_ce, retain_ce, weighted_sum
from funlearn.methods.relabel import uniform_relabel
from funlearn.model import FunctionalModel
from funlearn.transforms.base import GradientTransformation

__all__ = ["random_label", "random_label_objective"]


def random_label_objective(
    model: FunctionalModel,
    num_classes: int,
    *,
    retain_weight: float = 1.0,
    forget_weight: float = 1.0,
    exclude_true: bool = False,
) -> Objective:
    """``λ_r mean_R CE(x_r, y_r) + λ_f mean_F CE(x_f, ỹ)``, ``ỹ ~ Uniform`` drawn from the step's key.

    Separate train-mode forwards, retain then forget. ``exclude_true`` draws ``ỹ`` among the
    ``C - 1`` wrong classes only.
    """
    relabel = uniform_relabel(num_classes, exclude_true=exclude_true)
    return weighted_sum((retain_weight, retain_ce(model)), (forget_weight, forget_ce(model, relabel=relabel)))


def random_label(
    model: FunctionalModel,
    num_classes: int,
    tx: GradientTransformation | None = None,
    *,
    retain_weight: float = 1.0,
    forget_weight: float = 1.0,
    exclude_true: bool = False,
) -> Method:
    """RandomLabel (Golatkar et al., CVPR 2020; as run by Fan et al., ICLR 2024): see
    :func:`random_label_objective`. Fresh labels every step, so a forget sample seen twice gets two
    draws. Defaults: ``λ_r = λ_f = 1``, labels may equal the true one (``exclude_true=False``, as the
    references), ``tx = sgd(0.01, momentum=0.9, weight_decay=5e-4)``.
    """
    objective = random_label_objective(
        model, num_classes, retain_weight=retain_weight, forget_weight=forget_weight, exclude_true=exclude_true
    )
    return gradient_method(objective, resolve_tx(tx, literature_sgd(0.01)))
