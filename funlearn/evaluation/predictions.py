"""Predictions collected once per model: eval-mode logits and labels, from which every metric is computed.

Every metric in :mod:`funlearn.evaluation` is a pure, vectorised function of :class:`Predictions`
(``logits (N, C)``, ``labels (N,)``, on the CPU). A model's predictions are collected once per
evaluation set, batched, in eval mode (BatchNorm running statistics, no dropout), without autograd.
An optional ``limit`` keeps a fixed random subset of ``limit`` samples drawn from ``seed`` (never
"the first batches"); the same data, limit and seed select the same samples for every model, so
predictions of two models stay row-aligned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from funlearn.data.loaders import to_float
from funlearn.engine.evaluate import predict_logits
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.random import fold_in, key

__all__ = [
    "ModelPredictions",
    "Predictions",
    "collect_predictions",
    "predict_split",
]

Data = Iterable[tuple[Tensor, Tensor]] | tuple[Tensor, Tensor]

_SUBSET_STREAM = 0x5E7  # folded into the seed of a limit subset (one stream per evaluation set)


@dataclass(frozen=True, eq=False)
class Predictions:
    """Logits ``(N, C)`` (float, finite) and integer labels ``(N,)`` in ``[0, C)`` of one model on one set, N >= 1."""

    logits: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        logits, labels = self.logits, self.labels
        if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.dtype.is_floating_point:
            raise ValueError(f"logits must be a float tensor (N, C), got {_describe(logits)}")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point:
            raise ValueError(f"labels must be an integer tensor (N,), got {_describe(labels)}")
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"logits have {logits.shape[0]} rows but labels {labels.shape[0]}")
        if labels.shape[0] == 0:
            raise ValueError("predictions of an empty set: an evaluation set must hold at least one sample")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
            raise ValueError(f"labels must lie in [0, {logits.shape[1]}) (the logits' classes)")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("logits contain NaN or inf: the model diverged; evaluate its last finite params")

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    def subset(self, limit: int, seed: int = 0) -> Predictions:
        """A fixed random subset of ``limit`` rows (kept in their original order), drawn from ``seed``."""
        index = _subset_index(len(self), limit, seed)
        return self if index is None else Predictions(self.logits[index], self.labels[index])


@dataclass(frozen=True, eq=False)
class ModelPredictions:
    """One model's predictions on the evaluation sets of a forgetting split.

    ``test`` is the test set the model is judged on: for class-wise forgetting the test samples of
    the *kept* classes (``test_retain``), with ``test_forget`` holding those of the forgotten ones.
    """

    retain: Predictions
    forget: Predictions
    test: Predictions
    test_forget: Predictions | None = None


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None (got {limit!r})")


def _subset_index(n: int, limit: int | None, seed: int) -> Tensor | None:
    """Sorted indices of ``limit`` of ``n`` rows drawn from ``key(seed, ...)``; None keeps all rows."""
    _check_limit(limit)
    if limit is None or limit >= n:
        return None
    order = torch.randperm(n, generator=key(seed, _SUBSET_STREAM))
    return order[:limit].sort().values


def collect_predictions(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    data: Data,
    *,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> Predictions:
    """Eval-mode logits of ``model`` with ``(params, buffers)`` on ``data``, gathered on the CPU.

    ``data`` is an ``(x, y)`` pair of tensors (batched here by ``batch_size``) or an iterable of
    ``(x, y)`` batches such as an unshuffled :class:`~funlearn.TensorLoader`; uint8 pixels are
    scaled to [0, 1]. Batches run on the params' device, without autograd
    (:func:`funlearn.predict_logits`). ``limit`` keeps a fixed random subset of that many samples
    (:meth:`Predictions.subset` with ``seed``; tensors are subset before the forward passes).
    """
    _check_limit(limit)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (got {batch_size!r})")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"data x has {x.shape[0]} rows but y {y.shape[0]}")
        index = _subset_index(y.shape[0], limit, seed)
        if index is not None:
            x, y = x[index.to(x.device)], y[index.to(y.device)]
        batches: Iterable[tuple[Tensor, Tensor]] = zip(x.split(batch_size), y.split(batch_size), strict=True)
        limit = None
    elif isinstance(data, Iterable):
        batches = data
    else:
        raise ValueError(
            f"data must be an (x, y) pair of tensors or an iterable of batches, got {_describe(data)}"
        )
    logits, labels = predict_logits(
        model, params, buffers, ((to_float(xb), yb) for xb, yb in batches), name="data"
    )
    predictions = Predictions(logits.float().cpu(), labels.cpu().long())
    return predictions if limit is None else predictions.subset(limit, seed)


def predict_split(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    loaders: Mapping[str, Data],
    *,
    limit: int | None = None,
    seed: int = 0,
) -> ModelPredictions:
    """Predictions on the evaluation loaders of :func:`~funlearn.split_loaders` (or the same names).

    Uses ``"retain_eval"``/``"forget_eval"`` (falling back to ``"retain"``/``"forget"``) and, for
    class-wise splits, ``"test_retain"`` as the test set plus ``"test_forget"``; otherwise ``"test"``.
    Each set gets its own fixed ``limit`` subset (seeded by ``seed`` and the set's name).
    """

    def pick(*names: str) -> Data | None:
        return next((loaders[n] for n in names if n in loaders), None)

    sets = {
        "retain": pick("retain_eval", "retain"),
        "forget": pick("forget_eval", "forget"),
        "test": pick("test_retain", "test"),
        "test_forget": pick("test_forget"),
    }
    missing = [name for name in ("retain", "forget", "test") if sets[name] is None]
    if missing:
        raise ValueError(
            f"loaders lack {missing}; give 'retain_eval', 'forget_eval' and 'test' (as split_loaders "
            f"returns them), got {sorted(loaders)}"
        )
    collected = {
        name: collect_predictions(model, params, buffers, data, limit=limit, seed=fold_in(seed, i))
        for i, (name, data) in enumerate(sets.items())
        if data is not None
    }
    return ModelPredictions(**collected)
