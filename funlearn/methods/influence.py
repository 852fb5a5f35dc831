"""Influence (Newton) removal: ``theta' = theta - alpha * (C + damping I)^{-1} grad L_R(theta)``.

One damped Newton step on the mean retain loss ``L_R`` from the trained parameters (Koh & Liang,
2017; Guo et al., 2020), with ``C`` the Gauss-Newton matrix (the true Fisher for cross-entropy;
positive semi-definite, so conjugate gradient applies), the Hessian, the empirical Fisher or the
WoodFisher inverse of ``N`` per-sample gradients (Singh & Alistarh, 2020), see
:func:`funlearn.second_order.newton_step`. At a minimiser of the training loss, ``grad L_R =
-(n_F / n_R) grad L_F``: the step removes the forget set's first-order influence. ``alpha = 1`` is
the Newton step; the grid and a replaceable rule on evaluation data choose ``alpha``.

Compared with torchunlearn's ``Influence`` (methods.md 1.18): the inverse is a real inverse (its
WoodFisher recursion only moved ``v`` along the first sample's gradient, N7), the default alphas
are around the Newton step instead of 1e-9..1e-6 (a no-op, N8), the step is deterministic so there
are no repeats, and the rule does not reward zero forget accuracy under random forgetting (N6).

Cost: one gradient pass over ``retain_data``; then ``maxiter`` CG iterations, each one curvature
product over ``curvature_data`` (about two gradients per sample); then one evaluation pass over
``eval_data`` per alpha.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor

from funlearn import tree
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.second_order.hvp import batch_loss
from funlearn.second_order.removal import Curvature, newton_step
from funlearn.second_order.selection import (
    ClosedFormResult,
    EvalData,
    SelectionRule,
    check_eval_data,
    default_rule,
    evaluate_accuracy,
    search_candidates,
)

__all__ = ["influence"]


def influence(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    retain_data: Iterable[tuple[Tensor, Tensor]],
    *,
    eval_data: EvalData,
    alphas: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
    curvature: Curvature = "ggn",
    damping: float = 1e-3,
    l2: float = 0.0,
    curvature_data: Iterable[tuple[Tensor, Tensor]] | None = None,
    maxiter: int = 30,
    tol: float = 1e-3,
    forget_classes: Sequence[int] | None = None,
    selection: SelectionRule | None = None,
    progress: bool = True,
    **step_options: Any,
) -> ClosedFormResult:
    """Newton removal with ``alpha`` chosen over ``alphas`` by ``selection`` on ``eval_data``.

    ``retain_data`` and ``curvature_data`` (default: ``retain_data``) must be re-iterable (lists
    or loaders); ``l2`` is the training weight decay, part of the objective. ``step_options`` go
    to :func:`~funlearn.second_order.newton_step` (e.g. ``solver="lissa"``, ``woodfisher_samples``).
    ``result.info`` holds the direction and the solver's residual history.
    """
    rule = selection if selection is not None else default_rule(forget_classes)
    check_eval_data(eval_data, rule)
    if not alphas:
        raise ValueError("alphas must be a non-empty list of step sizes")
    loss_fn = batch_loss(model, buffers, l2=l2)
    if step_options.get("solver", "cg") == "cg":
        step_options.update(maxiter=maxiter, tol=tol)
    step = newton_step(loss_fn, params, retain_data, curvature=curvature, damping=damping,
                       curvature_data=curvature_data, **step_options)  # fmt: skip
    original = evaluate_accuracy(model, params, buffers, eval_data)
    candidates = (({"alpha": float(a)}, tree.axpy(-a, step.direction, tree.detach(params))) for a in alphas)
    result = search_candidates(model, buffers, candidates, eval_data, rule, original,
                               total=len(alphas), progress=progress)  # fmt: skip
    result.info.update(direction=step.direction, residuals=step.solve.residuals, converged=step.solve.converged)
    return result
