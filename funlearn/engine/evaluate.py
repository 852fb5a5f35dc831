"""Evaluation during a run: eval-mode accuracies on named loaders, on all samples or a fixed subset.

``accuracies(model, params, buffers, {"retain": ..., "forget": ..., "test": ...})`` gives
``{"acc/retain": 97.1, ...}`` in %. A loader is anything that yields ``(x, y)`` batches (a
:class:`~funlearn.data.TensorLoader`, a ``DataLoader``, a list); batches are moved to the params'
device. Correct counts accumulate on the device and are read once per loader.

``fixed_subset(loader, n, seed)`` draws ``n`` samples uniformly at random **once** (torchunlearn's
``n_limit`` took the first batches instead): a TensorLoader gets an index subset of the same storage
(unshuffled, unaugmented); any other loader is read once and the chosen samples are kept in memory
as a list of batches (selection by the ``n`` largest seeded random priorities, in one pass).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from funlearn.data.loaders import TensorLoader
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.random import fold_in, key

__all__ = ["Evaluator", "MetricFn", "accuracies", "fixed_subset", "predict_logits"]

MetricFn = Callable[[Params, Buffers], Mapping[str, Any]]

EVAL_SUBSET_STREAM = 101  # key(seed, EVAL_SUBSET_STREAM, crc32(loader name)) draws a loader's subset


def _device(params: Params) -> torch.device:
    return next(iter(params.values())).device if params else torch.device("cpu")


def _xy(batch: Any, name: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"evaluation loader {name!r} must yield (x, y) batches, got {type(batch).__name__}")
    return batch[0], batch[1]


@torch.no_grad()
def predict_logits(
    model: FunctionalModel, params: Params, buffers: Buffers, loader: Iterable, *, name: str = "loader"
) -> tuple[Tensor, Tensor]:
    """Eval-mode logits ``(N, C)`` and labels ``(N,)`` over every batch of ``loader``, concatenated."""
    device = _device(params)
    logits, labels = [], []
    for batch in loader:
        x, y = _xy(batch, name)
        logits.append(model.logits(params, buffers, x.to(device)))
        labels.append(y.to(device))
    if not logits:
        raise ValueError(f"evaluation loader {name!r} yielded no batches")
    return torch.cat(logits), torch.cat(labels)


@torch.no_grad()
def accuracies(
    model: FunctionalModel, params: Params, buffers: Buffers, loaders: Mapping[str, Iterable]
) -> dict[str, float]:
    """``{"acc/<name>": 100 * correct / total}`` for each named loader (eval mode, no gradients)."""
    device = _device(params)
    out = {}
    for name, loader in loaders.items():
        correct = torch.zeros((), dtype=torch.int64, device=device)
        total = 0
        for batch in loader:
            x, y = _xy(batch, name)
            y = y.to(device)
            correct += (model.logits(params, buffers, x.to(device)).argmax(-1) == y).sum()
            total += y.numel()
        if total == 0:
            raise ValueError(f"evaluation loader {name!r} yielded no samples")
        out[f"acc/{name}"] = 100.0 * int(correct) / total
    return out


def fixed_subset(loader: Iterable, n: int, seed: int = 0) -> Iterable:
    """``n`` samples of ``loader`` drawn uniformly at random with ``seed``, fixed from now on.

    Returns the loader itself when it has at most ``n`` samples. See the module docstring. For a
    generic loader the draw picks positions in its iteration order, so the same seed gives the same
    samples when that order is fixed (an unshuffled evaluation loader).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"eval_subset must be a positive int (number of samples per loader), got {n!r}")
    if isinstance(loader, TensorLoader):
        total = loader.x.shape[0] if loader.indices is None else loader.indices.numel()
        if n >= total:
            return loader
        pick = torch.randperm(total, generator=key(seed)).narrow(0, 0, n).sort().values.to(loader.x.device)
        rows = pick if loader.indices is None else loader.indices[pick]
        return TensorLoader(loader.x, loader.y, loader.batch_size, shuffle=False, indices=rows,
                            rank=loader.sampler.rank, world_size=loader.sampler.world_size)  # fmt: skip
    gen = key(seed)
    kept: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # x, y, priority, position
    seen, batch_size = 0, None
    for batch in loader:
        x, y = _xy(batch, "eval subset")
        batch_size = batch_size or len(y)
        priority = torch.rand(len(y), generator=gen)
        position = torch.arange(seen, seen + len(y))
        seen += len(y)
        new = (x, y, priority.to(y.device), position.to(y.device))
        kept = new if kept is None else tuple(torch.cat([a, b]) for a, b in zip(kept, new))  # type: ignore[assignment]
        if len(kept[1]) > n:
            top = kept[2].topk(n).indices
            kept = tuple(t[top] for t in kept)  # type: ignore[assignment]
    if kept is None:
        raise ValueError("cannot draw an evaluation subset: the loader yielded no batches")
    order = kept[3].argsort()
    x, y = kept[0][order], kept[1][order]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


class Evaluator:
    """What the loop evaluates: accuracies on named loaders (optionally fixed subsets) and user metrics.

    ``metrics`` are callables ``(params, buffers) -> {name: float}`` merged into the record.
    """

    def __init__(
        self,
        model: FunctionalModel | None,
        loaders: Mapping[str, Iterable] | None = None,
        metrics: MetricFn | Sequence[MetricFn] = (),
        *,
        subset: int | None = None,
        seed: int = 0,
    ) -> None:
        loaders = dict(loaders or {})
        if loaders and not isinstance(model, FunctionalModel):
            raise ValueError(
                "eval_loaders need model=, the FunctionalModel from funlearn.functional(module), to compute logits"
            )
        for name, loader in loaders.items():
            if not isinstance(name, str) or not hasattr(loader, "__iter__"):
                raise ValueError(f"eval_loaders must map names to iterables of (x, y) batches; got {name!r}: {loader!r}")
        self.metrics = [metrics] if callable(metrics) else list(metrics)
        if not all(callable(m) for m in self.metrics):
            raise ValueError("metrics must be a callable (params, buffers) -> {name: float}, or a list of them")
        if subset is not None:
            loaders = {
                name: fixed_subset(loader, subset, fold_in(seed, EVAL_SUBSET_STREAM, zlib.crc32(name.encode())))
                for name, loader in loaders.items()
            }
        self.model, self.loaders = model, loaders

    def __bool__(self) -> bool:
        return bool(self.loaders or self.metrics)

    def __call__(self, params: Params, buffers: Buffers) -> dict[str, float]:
        out = accuracies(self.model, params, buffers, self.loaders) if self.loaders else {}
        with torch.no_grad():
            for metric in self.metrics:
                out.update({k: float(v) for k, v in metric(params, buffers).items()})
        return out
