"""BoundaryShrink: fine-tune the forget samples toward their nearest wrong class."""

from __future__ import annotations

from typing import Literal

from funlearn.methods._defaults import resolve_tx
from funlearn.methods.base import Method, Objective, gradient_method
from funlearn.methods.objectives import forget_ce, retain_ce, weighted_sum
from funlearn.methods.reference import reference_method
from funlearn.methods.relabel import best_wrong_class, fgsm_relabel
from funlearn.model import FunctionalModel
from funlearn.transforms.base import GradientTransformation
from funlearn.transforms.optim import sgd

__all__ = ["boundary_shrink"]


def boundary_shrink(
    model: FunctionalModel,
    tx: GradientTransformation | None = None,
    *,
    eps: float = 0.1,
    labels: Literal["fgsm", "runner_up"] = "fgsm",
    clip: tuple[float, float] | None = (0.0, 1.0),
    retain_weight: float = 0.0,
    forget_weight: float = 1.0,
) -> Method:
    """``L = λ_f mean_F CE(f_θ(x_f), ỹ) + λ_r mean_R CE(f_θ(x_r), y_r)``, ``ỹ`` the nearest wrong class.

    Boundary Shrink (Chen et al., "Boundary Unlearning", CVPR 2023). ``labels="fgsm"`` (default, the
    paper): ``ỹ = argmax_{c≠y} f_0(x + ε sign(∇_x CE(f_0(x), y)))_c`` on the **original** model
    ``f_0`` (the model given to ``init``, frozen in the state), see :func:`fgsm_relabel`; cost: one
    input-gradient and one extra forward of ``f_0`` per forget sample. ``labels="runner_up"``
    (torchunlearn's cheap variant): the current model's best wrong class on the clean input, read from
    the training forward's own logits (no extra forward; torchunlearn runs a separate eval-mode
    forward, which differs only for models with BatchNorm or dropout). Defaults (the paper):
    ``ε = 0.1`` in pixel space, clipped to [0, 1], forget split only (``λ_r = 0``; torchunlearn adds
    the retain term with ``λ_r = 1``), ``tx = sgd(1e-5, momentum=0.9)``. Separate train-mode
    forwards, retain (if ``λ_r > 0``) then forget.
    """
    if labels not in ("fgsm", "runner_up"):
        raise ValueError(f"labels must be 'fgsm' or 'runner_up', got {labels!r}")

    tx = resolve_tx(tx, sgd(1e-5, 0.9))

    def objective(forget: Objective) -> Objective:
        return weighted_sum((retain_weight, retain_ce(model)), (forget_weight, forget))

    if labels == "runner_up":
        return gradient_method(objective(forget_ce(model, logit_relabel=best_wrong_class)), tx)
    return reference_method(
        lambda original: objective(forget_ce(model, relabel=fgsm_relabel(model, *original, eps, clip=clip))), tx
    )
