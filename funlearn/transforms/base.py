"""The optax shape: a gradient transformation is a pair of pure functions.

``init(params) -> state`` builds the state (a pytree of tensors: NamedTuples, tuples and dicts of
tensors, so it can be checkpointed with :func:`funlearn.io.state_to_tensors` and traced by
``torch.compile``). ``update(updates, state, params=None, **extra) -> (updates, state)`` maps
incoming updates (usually gradients) to outgoing updates and the next state. ``chain`` composes
transformations left to right, and ``apply_updates(params, updates)`` adds the result to the params.

Extra keyword arguments given to ``update`` (for example ``grad_fn`` for UAM's perturb-then-descend
step) are passed to every transformation of a chain; each takes what it needs and ignores the rest.

>>> import torch
>>> from funlearn.transforms import chain, scale, apply_updates
>>> tx = chain(scale(2.0), scale(-0.5))
>>> params = {"w": torch.ones(2)}
>>> updates, state = tx.update({"w": torch.ones(2)}, tx.init(params), params)
>>> apply_updates(params, updates)["w"].tolist()
[0.0, 0.0]
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import torch
from torch import Tensor

from funlearn.tree import Tree

__all__ = [
    "Updates",
    "State",
    "GradientTransformation",
    "chain",
    "identity",
    "apply_updates",
    "scale",
    "masked",
    "mask_updates",
    "LeafMask",
]

Updates = Tree
State = Any  # a pytree of tensors
LeafMask = dict[str, bool] | Callable[[Tree], dict[str, bool]]


class InitFn(Protocol):
    def __call__(self, params: Tree) -> State: ...


class UpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: State, params: Tree | None = None, **extra: Any
    ) -> tuple[Updates, State]: ...


class GradientTransformation(NamedTuple):
    """``init(params) -> state``; ``update(updates, state, params=None, **extra) -> (updates, state)``."""

    init: InitFn
    update: UpdateFn


class EmptyState(NamedTuple):
    """State of a stateless transformation."""


def identity() -> GradientTransformation:
    """Pass updates through unchanged."""

    def init(params: Tree) -> EmptyState:
        return EmptyState()

    def update(updates, state, params=None, **extra):
        return updates, state

    return GradientTransformation(init, update)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` in order; the state is the tuple of their states."""
    for i, tx in enumerate(transforms):
        if not isinstance(tx, GradientTransformation):
            raise TypeError(
                f"chain argument {i} is a {type(tx).__name__}, not a GradientTransformation; "
                "build it with a funlearn transformation factory such as funlearn.sgd(...)"
            )

    def init(params: Tree) -> tuple:
        return tuple(tx.init(params) for tx in transforms)

    def update(updates, state, params=None, **extra):
        new_states = []
        for tx, s in zip(transforms, state):
            updates, s = tx.update(updates, s, params, **extra)
            new_states.append(s)
        return updates, tuple(new_states)

    return GradientTransformation(init, update)


def apply_updates(params: Tree, updates: Updates) -> Tree:
    """``params + updates`` leaf by leaf (one multi-tensor op); leaves keep their dtype."""
    keys = list(params)
    p = [params[k] for k in keys]
    u = [updates[k].to(params[k].dtype) for k in keys]
    return dict(zip(keys, torch._foreach_add(p, u)))


def scale(step_size: float) -> GradientTransformation:
    """``u -> step_size * u``."""

    def init(params: Tree) -> EmptyState:
        return EmptyState()

    def update(updates, state, params=None, **extra):
        keys = list(updates)
        return dict(zip(keys, torch._foreach_mul(list(updates.values()), step_size))), state

    return GradientTransformation(init, update)


def resolve_leaf_mask(mask: LeafMask, params: Tree) -> dict[str, bool]:
    """A leaf mask given as a dict or a callable of the params, checked against the params' keys."""
    resolved = mask(params) if callable(mask) else mask
    missing = sorted(set(params) - set(resolved))
    if missing:
        raise ValueError(f"mask has no entry for params {missing}; give True/False for every key")
    return {k: bool(resolved[k]) for k in params}


def masked(inner: GradientTransformation, mask: LeafMask) -> GradientTransformation:
    """Apply ``inner`` only to the leaves where ``mask`` is True; the others pass through unchanged.

    ``mask`` is ``{name: bool}`` or a function of the params returning one (per leaf, as in optax;
    use :func:`mask_updates` for an element-wise mask). ``inner`` sees and keeps state for the
    selected leaves only.
    """

    def init(params: Tree) -> State:
        m = resolve_leaf_mask(mask, params)
        return inner.init({k: v for k, v in params.items() if m[k]})

    def update(updates, state, params=None, **extra):
        m = resolve_leaf_mask(mask, params if params is not None else updates)
        sub_updates = {k: v for k, v in updates.items() if m[k]}
        sub_params = None if params is None else {k: params[k] for k in sub_updates}
        new_sub, state = inner.update(sub_updates, state, sub_params, **extra)
        return {k: new_sub[k] if m[k] else v for k, v in updates.items()}, state

    return GradientTransformation(init, update)


def mask_updates(mask: Tree) -> GradientTransformation:
    """Element-wise mask: ``u -> where(mask, u, 0)``, with ``mask`` a tree of 0/1 or bool tensors.

    Put it **last** in a chain (after weight decay and momentum) so that a masked weight receives an
    update of exactly zero and stays bit-identical, whatever the earlier transformations did.
    ``torch.where`` (not ``u * mask``) keeps a NaN or inf in a masked coordinate from leaking.
    Leaves missing from ``mask`` are not masked.
    """
    bool_mask = {k: v.to(torch.bool) for k, v in mask.items()}

    def init(params: Tree) -> EmptyState:
        unknown = sorted(set(bool_mask) - set(params))
        if unknown:
            raise ValueError(f"mask has entries {unknown} that are not params")
        for k, m in bool_mask.items():
            if m.shape != params[k].shape:
                raise ValueError(
                    f"mask[{k!r}] has shape {tuple(m.shape)} but the param has {tuple(params[k].shape)}"
                )
        return EmptyState()

    def update(updates, state, params=None, **extra):
        out = {}
        for k, u in updates.items():
            m = bool_mask.get(k)
            out[k] = u if m is None else torch.where(m.to(u.device), u, u.new_zeros(()))
        return out, state

    return GradientTransformation(init, update)


def zero_count(params: Tree) -> Tensor:
    """A step counter for a state: a 0-d int64 tensor holding 0, on the params' device."""
    device = next(iter(params.values())).device if params else None
    return torch.zeros((), dtype=torch.int64, device=device)
