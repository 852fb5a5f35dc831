"""L1Sparse (l1-sparse): fine-tune on the retain split with a decaying L1 penalty."""

from __future__ import annotations

from typing import Literal

from funlearn.methods._defaults import literature_sgd, resolve_tx
from funlearn.methods.base import Method, gradient_method
from funlearn.methods.objectives import retain_ce
from funlearn.model import FunctionalModel
from funlearn.transforms.base import GradientTransformation, chain
from funlearn.transforms.schedules import Schedule, linear_schedule
from funlearn.transforms.unlearning import add_l1_subgradient, l1_proximal

__all__ = ["l1_sparse"]


def l1_sparse(
    model: FunctionalModel,
    total_steps: int,
    tx: GradientTransformation | None = None,
    *,
    l1: float | Schedule = 5e-4,
    learning_rate: float | Schedule = 0.01,
    mode: Literal["proximal", "subgradient"] = "proximal",
) -> Method:
    """``min mean_R CE(f_θ(x_r), y_r) + γ_t ||θ||_1`` with ``γ_t = γ (1 - t / total_steps)``.

    l1-sparse (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023): the
    coefficient decays linearly to 0 over the run (the reference decays it once per epoch; funlearn
    per step). ``l1`` is ``γ`` (then decayed over ``total_steps``) or any schedule.

    ``mode="proximal"`` (default): ``chain(tx, l1_proximal(γ_t, learning_rate))``, soft-thresholding
    ``θ <- sign(θ) max(|θ| - lr γ_t, 0)`` after the optimizer's step, which makes weights exactly 0;
    ``learning_rate`` must be the optimizer's. ``mode="subgradient"``: ``chain(add_l1_subgradient(γ_t),
    tx)``, the reference code's ``loss + γ_t ||θ||_1``. Defaults: ``γ = 5e-4``, ``tx =
    sgd(learning_rate, momentum=0.9, weight_decay=5e-4)`` with ``learning_rate = 0.01`` (10 epochs in
    the paper).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be the positive number of steps of the run, got {total_steps}")
    schedule = l1 if callable(l1) else linear_schedule(float(l1), 0.0, total_steps)
    base = resolve_tx(tx, literature_sgd(learning_rate))
    if mode == "proximal":
        full = chain(base, l1_proximal(schedule, learning_rate))
    elif mode == "subgradient":
        full = chain(add_l1_subgradient(schedule), base)
    else:
        raise ValueError(f"mode must be 'proximal' or 'subgradient', got {mode!r}")
    return gradient_method(retain_ce(model), full)
