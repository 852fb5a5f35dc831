"""What a method is: a pure ``step`` plus the ``init`` of its state.

``step(params, buffers, state, batch, key) -> (params, buffers, state, metrics)``

- ``batch`` is a split batch ``{"forget": (x, y), "retain": (x, y)}`` or a plain ``(x, y)``;
- ``key`` is a ``torch.Generator`` for the step's random draws (see :mod:`funlearn.random`); the
  engine derives it from the run seed and the step index, so runs are reproducible and resumable;
- ``state`` is a pytree of tensors (transformation state plus anything the method keeps), built by
  ``init(params, buffers)``;
- ``metrics`` is a flat ``{name: 0-d tensor}`` dict the engine records (``"loss"`` at least).

Most methods are an *objective* plus a gradient transformation, assembled by
:func:`gradient_method`: ``objective(params, buffers, batch, key) -> (loss, (new_buffers, metrics))``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import torch
from torch import Tensor

from funlearn.autodiff import value_and_grad
from funlearn.model import Buffers, Params
from funlearn.transforms.base import GradientTransformation, apply_updates

__all__ = ["Batch", "Metrics", "Objective", "Method", "gradient_method"]

Batch = Any  # {"forget": (x, y), "retain": (x, y)} or (x, y)
Metrics = dict[str, Tensor]


class Objective(Protocol):
    def __call__(
        self, params: Params, buffers: Buffers, batch: Batch, key: torch.Generator
    ) -> tuple[Tensor, tuple[Buffers, Metrics]]: ...


class StepFn(Protocol):
    def __call__(
        self, params: Params, buffers: Buffers, state: Any, batch: Batch, key: torch.Generator
    ) -> tuple[Params, Buffers, Any, Metrics]: ...


class Method(NamedTuple):
    """A pure unlearning (or training) method: ``init(params, buffers) -> state`` and ``step``."""

    init: Callable[[Params, Buffers], Any]
    step: StepFn


def gradient_method(objective: Objective, tx: GradientTransformation) -> Method:
    """One gradient step per batch: ``g = grad objective(θ)``, ``(u, s) = tx.update(g, s, θ)``, ``θ + u``.

    ``metrics`` holds the objective's own metrics plus ``"loss"`` (its value at θ, detached).
    """

    def init(params: Params, buffers: Buffers) -> Any:
        return tx.init(params)

    def step(params, buffers, state, batch, key):
        (loss, (new_buffers, metrics)), grads = value_and_grad(objective, has_aux=True)(
            params, buffers, batch, key
        )
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), new_buffers, state, {"loss": loss.detach(), **metrics}

    return Method(init, step)
