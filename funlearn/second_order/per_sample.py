"""Per-sample gradients ``g_b = grad_theta l(theta; x_b, y_b)``, their norms and their sum of squares.

A per-sample loss is a function ``loss_fn(params, x, y) -> scalar`` of ONE sample (``x`` without
its batch dim), the shape ``torch.func.vmap(torch.func.grad(loss_fn), in_dims=(None, 0, 0))``
needs. :func:`sample_loss` builds one from a :class:`~funlearn.model.FunctionalModel` with
BatchNorm in eval mode, and remembers the model, so the layer-wise path can be used for it.

Strategies (``strategy=``):

- ``"vmap"``: ``vmap(grad(loss_fn))`` over the batch, for any ``loss_fn``;
- ``"layerwise"``: one forward and one backward to the layer outputs, then closed-form per-sample
  products per layer (:mod:`funlearn.second_order.layerwise`); needs a :class:`SampleLoss`;
- ``"loop"``: one ``autograd.grad`` per sample, the reference for tests and benchmarks;
- ``"auto"`` (default): ``"layerwise"`` for a :class:`SampleLoss` whose model passes a one-time
  check, else ``"vmap"``. Measured on a 2-core CPU (``benchmarks/second_order.py``) layer-wise beats
  ``vmap`` on both a small CNN and ResNet-18, where ``vmap`` is slower than the loop.

``chunk_size`` bounds the samples processed at once (activation and intermediate memory); the
returned per-sample gradients themselves take ``B x num_params`` numbers (5.7 GB for ResNet-18 at
B = 128 in float32), which :func:`per_sample_grad_norms` and :func:`squared_grad_sum` never hold.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from funlearn import tree
from funlearn.autodiff import value_and_grad
from funlearn.losses import cross_entropy
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.second_order.layerwise import LayerwiseEngine, layerwise_engine

__all__ = [
    "SampleLoss",
    "sample_loss",
    "per_sample_grads",
    "per_sample_grad_norms",
    "squared_grad_sum",
]

Strategy = Literal["auto", "layerwise", "vmap", "loop"]
_STRATEGIES = ("auto", "layerwise", "vmap", "loop")
PerSampleLossFn = Callable[..., Tensor]


@dataclass(frozen=True, eq=False)
class SampleLoss:
    """``loss_fn(params, x, y) = loss(model.logits(params, buffers, x[None]), y[None])[0]``.

    ``loss(logits (B, C), y (B,)) -> (B,)`` returns per-sample values (default: cross-entropy).
    The model runs in eval mode (BatchNorm uses its running statistics), so samples are
    independent and the per-sample gradients are those of each sample's own loss.
    """

    model: FunctionalModel
    buffers: Buffers
    loss: Callable[[Tensor, Tensor], Tensor]

    def __call__(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        logits = self.model.logits(params, self.buffers, x.unsqueeze(0))
        return self.loss(logits, y.unsqueeze(0))[0]

    def cotangent(self, y: Tensor) -> Callable[[Tensor], list[Tensor]]:
        """``z -> [d/dz sum_b loss(z_b, y_b)]`` (B, C): each row is that sample's own gradient."""

        def cot(z: Tensor) -> list[Tensor]:
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                values = self.loss(z, y)
                if values.shape != (z.shape[0],):
                    raise ValueError(f"loss must return per-sample values of shape ({z.shape[0]},), "
                                     f"got {tuple(values.shape)}; use reduction='none'")  # fmt: skip
                return [torch.autograd.grad(values.sum(), z)[0]]

        return cot


def sample_loss(
    model: FunctionalModel, buffers: Buffers, loss: Callable[[Tensor, Tensor], Tensor] | None = None
) -> SampleLoss:
    """The per-sample loss of ``model`` in eval mode; ``loss`` defaults to per-sample cross-entropy.

    >>> import torch, funlearn as fl
    >>> model, params, buffers = fl.functional(torch.nn.Linear(3, 2))
    >>> loss_fn = sample_loss(model, buffers)
    >>> float(loss_fn(params, torch.zeros(3), torch.tensor(1))) > 0
    True
    """
    if not isinstance(model, FunctionalModel):
        raise TypeError(f"model must be a FunctionalModel from funlearn.functional(module), got {type(model).__name__}")
    return SampleLoss(model, buffers, loss if loss is not None else functools.partial(cross_entropy, reduction="none"))


def _check_batch(batch: Sequence[Tensor], name: str = "batch") -> tuple[Tensor, ...]:
    if not isinstance(batch, (tuple, list)) or not batch or not all(isinstance(t, Tensor) for t in batch):
        raise ValueError(f"{name} must be a tuple of tensors such as (x, y), got {type(batch).__name__}")
    n = batch[0].shape[0] if batch[0].ndim else -1
    if n < 1 or any(t.ndim == 0 or t.shape[0] != n for t in batch):
        raise ValueError(f"{name}'s tensors must share a non-empty first (batch) dimension, "
                         f"got shapes {[tuple(t.shape) for t in batch]}")  # fmt: skip
    return tuple(batch)


def _check_chunk(chunk_size: int | None) -> None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _engine_for(
    loss_fn: PerSampleLossFn, params: Params, batch: tuple[Tensor, ...], strategy: str
) -> LayerwiseEngine | None:
    """The layer-wise engine to use, or None for the vmap/loop paths (validates the strategy)."""
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    if strategy in ("vmap", "loop"):
        return None
    if not isinstance(loss_fn, SampleLoss) or len(batch) != 2:
        if strategy == "layerwise":
            raise ValueError("strategy='layerwise' needs loss_fn = sample_loss(model, buffers) and a batch (x, y)")
        return None
    return resolve_engine(loss_fn.model, params, loss_fn.buffers, batch, strategy)


def resolve_engine(
    model: FunctionalModel, params: Params, buffers: Buffers, batch: tuple[Tensor, ...], strategy: str
) -> LayerwiseEngine | None:
    """``model``'s layer-wise engine if ``strategy`` allows it ("auto" validates it once on ``batch``)."""
    if strategy in ("vmap", "loop"):
        return None
    engine = layerwise_engine(model)
    if strategy == "layerwise":
        if not engine.supported:
            raise ValueError(f"strategy='layerwise' cannot handle this model: {engine.reason}")
        return engine
    if engine.supported and not engine.validated and not engine.validate(params, buffers, batch[0], batch[1]):
        warnings.warn(f"layer-wise per-sample gradients unavailable ({engine.reason}); using vmap", stacklevel=3)
    return engine if engine.supported else None


def _chunks(batch: tuple[Tensor, ...], chunk_size: int | None):
    n = batch[0].shape[0]
    step = n if chunk_size is None else chunk_size
    for start in range(0, n, step):
        yield tuple(t[start : start + step] for t in batch)


def _vmap_grads(loss_fn: PerSampleLossFn, params: Params, batch: tuple[Tensor, ...]) -> Params:
    in_dims = (None,) + (0,) * len(batch)
    return torch.func.vmap(torch.func.grad(loss_fn), in_dims=in_dims)(tree.detach(params), *batch)


def _loop_grads(loss_fn: PerSampleLossFn, params: Params, batch: tuple[Tensor, ...]) -> Params:
    grad_fn = value_and_grad(loss_fn)
    rows = [grad_fn(params, *(t[i] for t in batch))[1] for i in range(batch[0].shape[0])]
    return {k: torch.stack([r[k] for r in rows]) for k in params}


def per_sample_grads(
    loss_fn: PerSampleLossFn,
    params: Params,
    batch: Sequence[Tensor],
    *,
    chunk_size: int | None = None,
    strategy: Strategy = "auto",
) -> Params:
    """``{name: (B, *shape)}``: row ``b`` is ``grad_theta loss_fn(params, *(t[b] for t in batch))``.

    ``batch`` is a tuple of tensors sharing the batch dim (usually ``(x, y)``); ``loss_fn`` takes
    one sample of each. ``chunk_size`` samples are processed at a time. See the module docstring
    for ``strategy``.
    """
    batch = _check_batch(batch)
    _check_chunk(chunk_size)
    engine = _engine_for(loss_fn, params, batch, strategy)
    parts = []
    for chunk in _chunks(batch, None if strategy == "vmap" else chunk_size):
        if engine is not None:
            parts.append(engine.grads(params, loss_fn.buffers, chunk[0], loss_fn.cotangent(chunk[1])))
        elif strategy == "loop":
            parts.append(_loop_grads(loss_fn, params, chunk))
        else:
            in_dims = (None,) + (0,) * len(chunk)
            vm = torch.func.vmap(torch.func.grad(loss_fn), in_dims=in_dims, chunk_size=chunk_size)
            parts.append(vm(tree.detach(params), *chunk))
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in params}


def per_sample_grad_norms(
    loss_fn: PerSampleLossFn,
    params: Params,
    batch: Sequence[Tensor],
    *,
    chunk_size: int | None = None,
    strategy: Strategy = "auto",
) -> Tensor:
    """``||g_b||_2`` over all parameters, shape (B,), without keeping the per-sample gradients.

    The layer-wise path uses ``||G_b^T A_b||^2 = ||G_b||^2 ||A_b||^2`` for linear layers and the
    Gram form ``<G_b^T G_b, U_b^T U_b>`` for convolutions with small feature maps.
    """
    batch = _check_batch(batch)
    _check_chunk(chunk_size)
    engine = _engine_for(loss_fn, params, batch, strategy)
    parts = []
    for chunk in _chunks(batch, chunk_size):
        if engine is not None:
            parts.append(engine.sq_norms(params, loss_fn.buffers, chunk[0], loss_fn.cotangent(chunk[1])))
        else:
            g = _loop_grads(loss_fn, params, chunk) if strategy == "loop" else _vmap_grads(loss_fn, params, chunk)
            parts.append(torch.stack([v.flatten(1).square().sum(1) for v in g.values()]).sum(0))
    return torch.cat(parts).sqrt()


def squared_grad_sum(
    loss_fn: PerSampleLossFn,
    params: Params,
    batch: Sequence[Tensor],
    *,
    chunk_size: int | None = None,
    strategy: Strategy = "auto",
) -> Params:
    """``sum_b g_b * g_b`` (element-wise square), shaped like ``params``, accumulated chunk by chunk.

    Divided by B this is the diagonal empirical Fisher of the batch (for a log-likelihood loss).
    The layer-wise path never forms a linear layer's per-sample gradients: ``sum_b (G_b A_b^T)^2 =
    (G^2)^T A^2``.
    """
    batch = _check_batch(batch)
    _check_chunk(chunk_size)
    engine = _engine_for(loss_fn, params, batch, strategy)
    total = tree.zeros_like(params)
    for chunk in _chunks(batch, chunk_size):
        if engine is not None:
            part = engine.sq_sum(params, loss_fn.buffers, chunk[0], loss_fn.cotangent(chunk[1]))
        else:
            g = _loop_grads(loss_fn, params, chunk) if strategy == "loop" else _vmap_grads(loss_fn, params, chunk)
            part = {k: v.square().sum(0) for k, v in g.items()}
        total = tree.add(total, part)
    return total
