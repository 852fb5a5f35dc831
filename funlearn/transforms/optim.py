"""Optimizer building blocks and the ready-made optimizers built from them.

The ready-made optimizers are chains, and their updates equal ``torch.optim``'s to float precision:

- ``sgd = chain(add_decayed_weights(wd), trace(momentum, nesterov, dampening), scale_by_learning_rate(lr))``
  (torch ``SGD``: ``g <- g + wd θ``; ``b <- μ b + (1 - d) g``, ``b = g`` on the first step;
  ``θ <- θ - lr (g + μ b)`` with nesterov, ``θ - lr b`` without)
- ``adam = chain(add_decayed_weights(wd), scale_by_adam(...), scale_by_learning_rate(lr))`` (L2 in the gradient)
- ``adamw = chain(scale_by_adam(...), add_decayed_weights(wd, mask), scale_by_learning_rate(lr))``
  (decoupled weight decay: ``θ <- θ - lr (adam(g) + wd θ)``)

All multi-tensor arithmetic uses ``torch._foreach_*``; nothing is updated in place, so the previous
state and params stay valid (the engine's divergence guard relies on it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from funlearn import tree
from funlearn.transforms.base import (
    EmptyState,
    GradientTransformation,
    LeafMask,
    State,
    chain,
    resolve_leaf_mask,
    zero_count,
)
from funlearn.transforms.schedules import Schedule, as_schedule

__all__ = [
    "scale_by_learning_rate",
    "trace",
    "add_decayed_weights",
    "scale_by_adam",
    "clip_by_global_norm",
    "skip_not_finite",
    "sgd",
    "adam",
    "adamw",
]


def _keys_vals(t: dict[str, Tensor]) -> tuple[list[str], list[Tensor]]:
    return list(t), list(t.values())


class ScaleByScheduleState(NamedTuple):
    count: Tensor


def scale_by_learning_rate(learning_rate: float | Schedule, *, flip_sign: bool = True) -> GradientTransformation:
    """``u -> -lr(t) * u`` (``+lr(t) u`` with ``flip_sign=False``); ``t`` counts calls from 0.

    ``learning_rate`` is a number or a schedule (see :mod:`funlearn.transforms.schedules`).
    """
    sign = -1.0 if flip_sign else 1.0
    if not callable(learning_rate):
        lr = sign * float(learning_rate)

        def init_const(params):
            return EmptyState()

        def update_const(updates, state, params=None, **extra):
            keys, vals = _keys_vals(updates)
            return dict(zip(keys, torch._foreach_mul(vals, lr))), state

        return GradientTransformation(init_const, update_const)

    schedule = as_schedule(learning_rate)

    def init(params):
        return ScaleByScheduleState(zero_count(params))

    def update(updates, state, params=None, **extra):
        keys, vals = _keys_vals(updates)
        step_size = sign * schedule(state.count)
        return dict(zip(keys, torch._foreach_mul(vals, step_size))), ScaleByScheduleState(state.count + 1)

    return GradientTransformation(init, update)


class TraceState(NamedTuple):
    trace: dict[str, Tensor]
    count: Tensor


def trace(decay: float, *, nesterov: bool = False, dampening: float = 0.0) -> GradientTransformation:
    """Momentum: ``b <- decay * b + (1 - dampening) * u`` (``b = u`` on the first step, as torch).

    Outputs ``b``, or ``u + decay * b`` with ``nesterov``. ``decay=0`` is the identity.
    """
    if decay < 0:
        raise ValueError(f"momentum decay must be >= 0, got {decay}")
    if nesterov and (decay <= 0 or dampening != 0):
        raise ValueError("nesterov momentum requires decay > 0 and dampening = 0 (as torch.optim.SGD)")

    def init(params):
        return TraceState(tree.zeros_like(params), zero_count(params))

    def update(updates, state, params=None, **extra):
        if decay == 0:
            return updates, state
        keys, u = _keys_vals(updates)
        b = [state.trace[k] for k in keys]
        if dampening == 0:
            new_b = torch._foreach_add(u, b, alpha=decay)  # b = 0 on the first step gives b = u
        else:
            first = state.count == 0
            coef = torch.where(first, 1.0, 1.0 - dampening).to(torch.float32)
            new_b = torch._foreach_add(torch._foreach_mul(b, decay), torch._foreach_mul(u, coef))
        out = torch._foreach_add(u, new_b, alpha=decay) if nesterov else new_b
        return dict(zip(keys, out)), TraceState(dict(zip(keys, new_b)), state.count + 1)

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay: float, mask: LeafMask | None = None) -> GradientTransformation:
    """``u -> u + weight_decay * θ`` on the leaves selected by ``mask`` (all leaves by default).

    ``mask`` is ``{name: bool}`` or a function of the params, e.g. ``lambda p: {k: v.ndim > 1 for k, v
    in p.items()}`` to leave biases and normalisation weights undecayed.
    """

    def init(params):
        return EmptyState()

    def update(updates, state, params=None, **extra):
        if weight_decay == 0:
            return updates, state
        if params is None:
            raise ValueError("add_decayed_weights needs params: call update(updates, state, params)")
        m = resolve_leaf_mask(mask, params) if mask is not None else None
        keys = [k for k in updates if m is None or m[k]]
        decayed = torch._foreach_add([updates[k] for k in keys], [params[k] for k in keys], alpha=weight_decay)
        out = dict(updates)
        out.update(zip(keys, decayed))
        return out, state

    return GradientTransformation(init, update)


class ScaleByAdamState(NamedTuple):
    count: Tensor
    mu: dict[str, Tensor]
    nu: dict[str, Tensor]
    nu_max: dict[str, Tensor]


def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *, amsgrad: bool = False
) -> GradientTransformation:
    """Adam's direction: ``m <- b1 m + (1-b1) u``, ``v <- b2 v + (1-b2) u^2``, step ``t`` from 1,

    ``u -> (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``; with ``amsgrad`` the running maximum of
    ``v`` replaces ``v`` in the denominator.
    """
    for name, b in (("b1", b1), ("b2", b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {b}")

    def init(params):
        zeros = tree.zeros_like
        return ScaleByAdamState(zero_count(params), zeros(params), zeros(params), zeros(params) if amsgrad else {})

    def update(updates, state, params=None, **extra):
        keys, g = _keys_vals(updates)
        m = [state.mu[k] for k in keys]
        v = [state.nu[k] for k in keys]
        new_m = torch._foreach_lerp(m, g, 1.0 - b1)
        new_v = torch._foreach_add(torch._foreach_mul(v, b2), torch._foreach_mul(g, g), alpha=1.0 - b2)
        count = state.count + 1
        t = count.to(torch.float64)  # bias corrections in double precision, as torch.optim.Adam
        bc1 = 1.0 - torch.pow(torch.tensor(b1, dtype=torch.float64, device=t.device), t)
        bc2_sqrt = torch.sqrt(1.0 - torch.pow(torch.tensor(b2, dtype=torch.float64, device=t.device), t))
        if amsgrad:
            v_max = torch._foreach_maximum([state.nu_max[k] for k in keys], new_v)
            denom_src = v_max
        else:
            v_max, denom_src = [], new_v
        denom = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(denom_src), bc2_sqrt), eps)
        out = torch._foreach_div(torch._foreach_div(new_m, denom), bc1)
        new_state = ScaleByAdamState(count, dict(zip(keys, new_m)), dict(zip(keys, new_v)), dict(zip(keys, v_max)))
        return dict(zip(keys, out)), new_state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """``u -> u * min(1, max_norm / (||u||_2 + 1e-6))`` (torch's ``clip_grad_norm_``)."""
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")

    def init(params):
        return EmptyState()

    def update(updates, state, params=None, **extra):
        keys, u = _keys_vals(updates)
        coef = torch.clamp(max_norm / (tree.global_norm(updates) + 1e-6), max=1.0)
        return dict(zip(keys, torch._foreach_mul(u, coef))), state

    return GradientTransformation(init, update)


class SkipNotFiniteState(NamedTuple):
    inner: State
    skipped: Tensor  # number of skipped steps so far
    last_finite: Tensor  # whether the latest step was applied


def skip_not_finite(inner: GradientTransformation) -> GradientTransformation:
    """Guard: when the incoming or outgoing updates hold a NaN/inf, output zeros and keep the state.

    Otherwise behaves exactly like ``inner``. No host sync: the choice is a ``torch.where`` on a
    0-d boolean, so a compiled step stays one graph. ``state.skipped`` counts skipped steps.
    """

    def init(params):
        device = next(iter(params.values())).device if params else None
        skipped = torch.zeros((), dtype=torch.int64, device=device)
        return SkipNotFiniteState(inner.init(params), skipped, torch.ones((), dtype=torch.bool, device=device))

    def update(updates, state, params=None, **extra):
        new_updates, new_inner = inner.update(updates, state.inner, params, **extra)
        ok = tree.all_finite(updates) & tree.all_finite(new_updates)
        zeros = tree.zeros_like(new_updates)
        out = tree.where(ok, new_updates, zeros)
        kept_inner = pytree.tree_map(lambda a, b: torch.where(ok, a, b), new_inner, state.inner)
        return out, SkipNotFiniteState(kept_inner, state.skipped + (~ok).to(torch.int64), ok)

    return GradientTransformation(init, update)


def sgd(
    learning_rate: float | Schedule,
    momentum: float = 0.0,
    *,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    dampening: float = 0.0,
) -> GradientTransformation:
    """SGD with coupled (L2) weight decay and momentum, exactly as ``torch.optim.SGD``."""
    return chain(
        add_decayed_weights(weight_decay),
        trace(momentum, nesterov=nesterov, dampening=dampening),
        scale_by_learning_rate(learning_rate),
    )


def adam(
    learning_rate: float | Schedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
) -> GradientTransformation:
    """Adam with L2 weight decay added to the gradient, exactly as ``torch.optim.Adam``."""
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_adam(b1, b2, eps, amsgrad=amsgrad),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: float | Schedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    weight_decay: float = 1e-2,
    mask: LeafMask | None = None,
    amsgrad: bool = False,
) -> GradientTransformation:
    """AdamW (decoupled weight decay), exactly as ``torch.optim.AdamW``; ``mask`` selects decayed leaves."""
    return chain(
        scale_by_adam(b1, b2, eps, amsgrad=amsgrad),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )

