"""Frozen reference models for methods that compare with the model before unlearning.

SCRUB and BadTeacher distil from the original model (the *teacher*), BoundaryShrink attacks it.
funlearn snapshots it explicitly at ``init``: the ``params``/``buffers`` given to ``init`` (the model
before unlearning) are copied into the method's state, where they stay frozen, are checkpointed with
it and come back on resume. torchunlearn took these copies lazily at the first step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple


from funlearn import tree
from funlearn.methods.base import Method, Objective, gradient_method
from funlearn.model import Buffers, Params
from funlearn.transforms.base import GradientTransformation

__all__ = ["ReferenceState", "reference_method", "frozen_copy"]


class ReferenceState(NamedTuple):
    """The optimizer's state plus the frozen reference models, each a ``(params, buffers)`` pair."""

    opt: Any
    references: tuple[tuple[Params, Buffers], ...]


def frozen_copy(params: Params, buffers: Buffers) -> tuple[Params, Buffers]:
    """Detached copies of ``params`` and ``buffers`` (a frozen reference model)."""
    return tree.clone(tree.detach(params)), tree.clone(tree.detach(buffers))


def reference_method(
    make_objective: Callable[..., Objective],
    tx: GradientTransformation,
    references: Callable[[Params, Buffers], Sequence[tuple[Params, Buffers]]] = lambda p, b: ((p, b),),
    *,
    step_rule: Callable[[Objective, GradientTransformation], Method] = gradient_method,
) -> Method:
    """:func:`gradient_method` of ``make_objective(*refs)``, with ``refs`` frozen in the state.

    ``refs = references(params, buffers)`` is computed once, by ``init``, from the model before
    unlearning (by default the one reference ``(params, buffers)`` itself), and copied.
    ``step_rule(objective, tx)`` makes the step (default :func:`gradient_method`; e.g. a
    perturb-then-descend step for SAM/UAM).
    """

    def init(params: Params, buffers: Buffers) -> ReferenceState:
        return ReferenceState(tx.init(params), tuple(frozen_copy(*ref) for ref in references(params, buffers)))

    def step(params, buffers, state, batch, key):
        inner = step_rule(make_objective(*state.references), tx)
        params, buffers, opt, metrics = inner.step(params, buffers, state.opt, batch, key)
        return params, buffers, state._replace(opt=opt), metrics

    return Method(init, step)


