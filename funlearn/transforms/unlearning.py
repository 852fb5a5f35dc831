"""The unlearning transformations: L1 (proximal and subgradient), perturb-then-descend, top-k masks.

Each is a :class:`~funlearn.transforms.GradientTransformation` that composes with the optimizers in a
``chain``:

- ``chain(add_l1_subgradient(λ), sgd(...))``: ``g + λ_t sign(θ)`` before the optimizer (l1-sparse as
  Jia et al. wrote it, a penalty ``λ_t ||θ||_1`` in the loss);
- ``chain(sgd(lr, ...), l1_proximal(λ, lr))``: soft-thresholding after the optimizer's update,
  ``θ <- sign(θ + u) max(|θ + u| - lr_t λ_t, 0)``, which sets weights exactly to zero;
- ``chain(perturb_then_descend(ρ), sgd(...))``: the SAM/UAM step. Its incoming updates are the
  gradient ``g`` of a *perturbation* objective at ``θ``; it calls ``grad_fn`` (the gradient of the
  *descent* objective) at ``θ + ρ_t g / ||g||`` and passes that gradient on, to be applied from ``θ``.
  :func:`funlearn.methods.perturb_descend_method` supplies ``grad_fn``;
- ``chain(sgd(...), mask_updates(topk_mask(scores, 0.5)))``: an element-wise mask that keeps the
  ``k`` highest-scoring weights trainable (SalUn's saliency mask), placed last so weight decay and
  momentum cannot move the others.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from funlearn import tree
from funlearn.transforms.base import (
    GradientTransformation,
    LeafMask,
    resolve_leaf_mask,
    zero_count,
)
from funlearn.transforms.schedules import Schedule, as_schedule

__all__ = ["l1_proximal", "add_l1_subgradient", "perturb_then_descend", "topk_mask"]

GradFn = Callable[[tree.Tree], tree.Tree]


class CountState(NamedTuple):
    """A call counter (0-d int64) that drives a schedule."""

    count: Tensor


def _selected(mask: LeafMask | None, params: tree.Tree) -> list[str]:
    if mask is None:
        return list(params)
    m = resolve_leaf_mask(mask, params)
    return [k for k in params if m[k]]


def l1_proximal(
    l1: float | Schedule, learning_rate: float | Schedule = 1.0, *, mask: LeafMask | None = None
) -> GradientTransformation:
    """Proximal step of ``λ_t ||θ||_1`` after the optimizer: ``u -> prox(θ + u) - θ``.

    ``prox(v) = sign(v) * max(|v| - τ_t, 0)`` (soft-thresholding) with ``τ_t = lr(t) * λ(t)``, ``t``
    counting calls from 0; ``l1`` and ``learning_rate`` are numbers or schedules (the l1-sparse decay
    is ``linear_schedule(λ, 0.0, total_steps)``). Put it **after** the optimizer (its input is the
    optimizer's update ``u``, already scaled by ``-lr``) and give it the optimizer's learning rate.
    ``mask`` (``{name: bool}`` or a function of the params) selects the leaves it acts on; all by
    default, biases and normalisation weights included, as the reference ``||θ||_1``.
    """
    l1_schedule, lr_schedule = as_schedule(l1), as_schedule(learning_rate)

    def init(params):
        return CountState(zero_count(params))

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("l1_proximal needs params: call update(updates, state, params)")
        keys = _selected(mask, params)
        threshold = lr_schedule(state.count) * l1_schedule(state.count)
        theta = [params[k] for k in keys]
        moved = torch._foreach_add(theta, [updates[k] for k in keys])
        shrunk = torch._foreach_clamp_min(torch._foreach_sub(torch._foreach_abs(moved), threshold), 0.0)
        proximal = torch._foreach_mul(torch._foreach_sign(moved), shrunk)
        out = dict(updates)
        out.update(zip(keys, torch._foreach_sub(proximal, theta)))
        return out, CountState(state.count + 1)

    return GradientTransformation(init, update)


def add_l1_subgradient(l1: float | Schedule, *, mask: LeafMask | None = None) -> GradientTransformation:
    """``u -> u + λ_t sign(θ)`` (``sign(0) = 0``): the gradient of the penalty ``λ_t ||θ||_1``.

    Put it **before** the optimizer, like ``add_decayed_weights``. This is l1-sparse as the reference
    code (Jia et al., NeurIPS 2023) computes it: the penalty added to the loss, so momentum and the
    learning rate act on it. ``t`` counts calls from 0; ``mask`` selects leaves as in :func:`l1_proximal`.
    """
    l1_schedule = as_schedule(l1)

    def init(params):
        return CountState(zero_count(params))

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("add_l1_subgradient needs params: call update(updates, state, params)")
        keys = _selected(mask, params)
        penalty = torch._foreach_mul(torch._foreach_sign([params[k] for k in keys]), l1_schedule(state.count))
        out = dict(updates)
        out.update(zip(keys, torch._foreach_add([updates[k] for k in keys], penalty)))
        return out, CountState(state.count + 1)

    return GradientTransformation(init, update)


def perturb_then_descend(rho: float | Schedule, *, eps: float = 1e-12) -> GradientTransformation:
    """SAM's shape with two objectives (UAM): ``g -> grad_fn(θ + ρ_t g / (||g||_2 + eps))``.

    ``update(g, state, params, grad_fn=...)``: ``g`` is the gradient of the perturbation objective
    at ``θ = params`` (UAM: the forget loss); ``grad_fn(p)`` returns the gradient of the descent
    objective at ``p`` (UAM: the retain loss). The output is that gradient at the perturbed point,
    and the rest of the chain turns it into an update applied from ``θ`` itself (perturb, gradient,
    restore, descend). ``ρ_t`` is a number or a schedule of the call count ``t`` from 0, e.g.
    ``cosine_schedule(ρ, total_steps)`` (clamped at 0 after ``total_steps``, unlike torchunlearn's
    periodic one). The norm is global over all leaves. Put it **first** in the chain.
    """
    rho_schedule = as_schedule(rho)

    def init(params):
        return CountState(zero_count(params))

    def update(updates, state, params=None, *, grad_fn: GradFn | None = None, **extra: Any):
        if grad_fn is None or params is None:
            raise ValueError(
                "perturb_then_descend needs params and grad_fn: call update(g, state, params, grad_fn=f) "
                "or build the step with funlearn.perturb_descend_method(perturb, descent, tx)"
            )
        step = rho_schedule(state.count) / (tree.global_norm(updates) + eps)
        perturbed = tree.axpy(step, {k: updates[k] for k in params}, params)
        return grad_fn(perturbed), CountState(state.count + 1)

    return GradientTransformation(init, update)


def topk_mask(scores: tree.Tree, fraction: float) -> dict[str, Tensor]:
    """Boolean tree that is True on exactly the ``k = int(fraction * N)`` highest scores (N = all entries).

    The cut is by rank over all leaves together: ``τ`` is the k-th largest score (``kthvalue``), every
    score above ``τ`` is kept, and ties at ``τ`` are kept in flat order (the tree's key order, then
    row-major) until exactly ``k`` entries are True. Use it with :func:`mask_updates` as the last
    transformation to train only those weights (SalUn's saliency mask, Fan et al., ICLR 2024).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1] (the share of weights kept trainable), got {fraction}")
    vector, spec = tree.flatten(tree.detach(scores))
    n = vector.numel()
    k = int(fraction * n)
    if k == 0:
        raise ValueError(f"fraction={fraction} of {n} weights keeps none; raise fraction to at least {1 / n:.3g}")
    if not bool(torch.isfinite(vector).all()):
        raise ValueError("scores hold NaN or inf; compute them from finite gradients")
    vector = vector.to(torch.float64 if vector.dtype == torch.float64 else torch.float32)
    threshold = torch.kthvalue(vector, n - k + 1).values  # the k-th largest
    above = vector > threshold
    ties = vector == threshold
    keep = above | (ties & (torch.cumsum(ties, 0) <= k - int(above.sum())))
    return {key: m.to(torch.bool) for key, m in spec.unflatten(keep.to(torch.uint8)).items()}
