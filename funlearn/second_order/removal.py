"""Newton (influence) removal: one damped Newton step on the retain objective.

``theta_new = theta - alpha * (C + damping I)^{-1} grad L_R(theta)`` with ``L_R`` the mean loss over
the retain data and ``C`` its curvature: the Hessian, the Gauss-Newton matrix (the true Fisher for
cross-entropy, always PSD), the empirical Fisher through Jacobian products, or the WoodFisher
inverse of ``N`` per-sample gradients. At a minimiser of the full objective
``L = (n_R L_R + n_F L_F) / n``, ``grad L_R = -(n_F / n_R) grad L_F``, so this is the influence-
function removal of the forget set (Koh & Liang 2017; Guo et al. 2020): exact in one step for a
quadratic objective (ridge regression), and within Guo et al.'s residual bound for L2-regularised
logistic regression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import torch

from funlearn import tree
from funlearn.model import Params
from funlearn.second_order.hvp import (
    BatchLoss,
    data_grad,
    empirical_fisher_vp,
    ggn_vp,
    hvp,
)
from funlearn.second_order.per_sample import per_sample_grads, sample_loss
from funlearn.second_order.solvers import (
    SolveResult,
    cg,
    dense_solve,
    hessian_matrix,
    lissa,
    woodfisher,
)

__all__ = ["NewtonStep", "newton_step", "newton_removal"]

Curvature = Literal["hessian", "ggn", "empirical_fisher", "woodfisher"]


class NewtonStep(NamedTuple):
    """``direction = (C + damping I)^{-1} grad``; ``solve`` reports the inner solver."""

    direction: Params
    grad: Params
    solve: SolveResult


def _curvature_product(
    curvature: Curvature | Callable[[Params], Params], loss_fn: Callable, params: Params, data: Iterable[Any]
) -> Callable[[Params], Params]:
    if callable(curvature):
        return curvature
    if curvature == "hessian":
        return lambda v: hvp(loss_fn, params, v, data)
    if not isinstance(loss_fn, BatchLoss):
        raise ValueError(f"curvature={curvature!r} needs loss_fn = batch_loss(model, buffers); use 'hessian' "
                         "or pass a product function")  # fmt: skip
    product = ggn_vp if curvature == "ggn" else empirical_fisher_vp
    l2 = loss_fn.l2

    def matvec(v: Params) -> Params:
        out = product(loss_fn.model, params, loss_fn.buffers, v, data, loss=loss_fn.loss)
        return tree.axpy(l2, v, out) if l2 else out

    return matvec


def newton_step(
    loss_fn: Callable[[Params, Any], torch.Tensor],
    params: Params,
    data: Iterable[Any],
    *,
    curvature: Curvature | Callable[[Params], Params] = "hessian",
    damping: float = 0.0,
    solver: Literal["cg", "lissa", "dense"] = "cg",
    curvature_data: Iterable[Any] | None = None,
    woodfisher_samples: int = 1000,
    **solver_options: Any,
) -> NewtonStep:
    """The damped Newton direction of ``L = mean of loss_fn(params, batch)`` over ``data``.

    ``loss_fn(params, batch)`` returns a batch's MEAN loss (e.g. :func:`batch_loss`, whose ``l2``
    term is included in every curvature). ``curvature_data`` (default ``data``) estimates the
    curvature, e.g. on a subset. ``solver_options`` go to :func:`cg` (``tol``, ``maxiter``) or
    :func:`lissa` (``depth``, ``scale``, ``repeats``, ``seed``); ``"dense"`` forms the Hessian
    (small models only). ``"woodfisher"`` inverts ``damping I + l2 I + (1/N) sum g_s g_s^T`` over the
    first ``woodfisher_samples`` samples of ``curvature_data`` exactly (``N x P`` memory).

    Cost: one pass for the gradient, then one curvature product (about two gradients each, over
    ``curvature_data``) per solver iteration.
    """
    if solver not in ("cg", "lissa", "dense"):
        raise ValueError(f"solver must be 'cg', 'lissa' or 'dense', got {solver!r}")
    if not callable(curvature) and curvature not in ("hessian", "ggn", "empirical_fisher", "woodfisher"):
        raise ValueError(f"curvature must be 'hessian', 'ggn', 'empirical_fisher', 'woodfisher' or a function, got {curvature!r}")
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    curvature_data = data if curvature_data is None else curvature_data
    params = tree.detach(params)
    grad = data_grad(loss_fn, params, data)
    if curvature == "woodfisher":
        if not isinstance(loss_fn, BatchLoss):
            raise ValueError("curvature='woodfisher' needs loss_fn = batch_loss(model, buffers)")
        xs, ys, count = [], [], 0
        for x, y in curvature_data:  # the first woodfisher_samples samples
            xs.append(x[: woodfisher_samples - count])
            ys.append(y[: woodfisher_samples - count])
            count += xs[-1].shape[0]
            if count >= woodfisher_samples:
                break
        per = per_sample_grads(sample_loss(loss_fn.model, loss_fn.buffers, loss_fn.loss), params,
                               (torch.cat(xs), torch.cat(ys)))  # fmt: skip
        direction = woodfisher(per, grad, damping=damping + loss_fn.l2)
        return NewtonStep(direction, grad, SolveResult(direction, [], 1, True))
    if solver == "dense":
        if curvature != "hessian":
            raise ValueError("solver='dense' forms the Hessian: use curvature='hessian'")
        direction = dense_solve(hessian_matrix(loss_fn, params, curvature_data), grad, damping=damping)
        return NewtonStep(direction, grad, SolveResult(direction, [], 1, True))
    matvec = _curvature_product(curvature, loss_fn, params, curvature_data)
    if solver == "cg":
        result = cg(matvec, grad, damping=damping, **solver_options)
    else:
        result = lissa(matvec, grad, damping=damping, **solver_options)
    return NewtonStep(result.x, grad, result)


def newton_removal(
    loss_fn: Callable[[Params, Any], torch.Tensor],
    params: Params,
    retain_data: Iterable[Any],
    *,
    alpha: float = 1.0,
    **step_options: Any,
) -> tuple[Params, NewtonStep]:
    """``(theta - alpha * direction, step)`` with ``step = newton_step(loss_fn, params, retain_data,
    **step_options)``: remove the forget set by one Newton step on the retain objective."""
    step = newton_step(loss_fn, params, retain_data, **step_options)
    return tree.axpy(-alpha, step.direction, tree.detach(params)), step
