"""Plain supervised training on the engine: original models and retrain-from-scratch references.

The method is cross-entropy on ``(x, y)`` batches in train mode (BatchNorm batch statistics,
running statistics returned as new buffers), one optimizer step per batch:
``θ <- θ + tx(∇ mean CE(f_θ(x), y))``, built with :func:`funlearn.methods.gradient_method`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from funlearn.engine.loop import RunResult, run
from funlearn.losses import accuracy, cross_entropy
from funlearn.methods.base import Method, gradient_method
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.transforms.base import GradientTransformation
from funlearn.transforms.optim import adam

__all__ = ["train"]


def _supervised(model: FunctionalModel, optimizer: GradientTransformation, label_smoothing: float) -> Method:
    """CE objective; metrics ``loss`` and ``acc`` (the batch's train-mode accuracy in %)."""

    def objective(params, buffers, batch, key):
        if isinstance(batch, Mapping) or not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(
                "train expects (x, y) batches; for a forget/retain split train on loaders['retain'] "
                f"(got {type(batch).__name__})"
            )
        x, y = batch
        logits, new_buffers = model.apply(params, buffers, x, train=True)
        loss = cross_entropy(logits, y, label_smoothing=label_smoothing)
        return loss, (new_buffers, {"acc": 100.0 * accuracy(logits, y)})

    return gradient_method(objective, optimizer)


def train(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    loader: Iterable,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    optimizer: GradientTransformation | None = None,
    label_smoothing: float = 0.0,
    **run_options: Any,
) -> RunResult:
    """Train ``model`` with cross-entropy on ``(x, y)`` batches of ``loader``; returns :class:`RunResult`.

    ``optimizer`` is any gradient transformation (default ``adam(1e-3)``; the CIFAR recipe is
    ``sgd(cosine_schedule(0.1, steps), momentum=0.9, weight_decay=5e-4)``). Every other keyword
    (``seed``, ``eval_loaders``, ``best``, ``run_dir``, ``resume``, ``progress``, ...) goes to
    :func:`~funlearn.engine.run`, which also gets ``model``.

    >>> import torch, funlearn as fl
    >>> model, params, buffers = fl.functional(torch.nn.Linear(2, 2))
    >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))]
    >>> result = fl.train(model, params, buffers, data, steps=200, optimizer=fl.sgd(0.5), progress=False)
    >>> result.history.steps[-1]["acc"]
    100.0
    """
    if label_smoothing < 0 or label_smoothing >= 1:
        raise ValueError(f"label_smoothing must lie in [0, 1) (got {label_smoothing!r})")
    if not isinstance(model, FunctionalModel):
        raise ValueError("model must be the FunctionalModel from funlearn.functional(module)")
    optimizer = adam(1e-3) if optimizer is None else optimizer
    method = _supervised(model, optimizer, label_smoothing)
    return run(method, params, buffers, loader, epochs=epochs, steps=steps, model=model, **run_options)
