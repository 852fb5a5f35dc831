"""The diagonal Fisher information of a classifier, per sample and averaged over the data.

For a model with predictive distribution ``p(c | x_i) = softmax(f_theta(x_i))_c`` and
``g_ic = grad_theta log p(c | x_i)``:

- ``"true"``: ``F = (1/n) sum_i sum_c p_ic * g_ic^2`` (exact expectation over the model's classes);
- ``"empirical"``: ``F = (1/n) sum_i g_{i, y_i}^2`` (the observed labels);
- ``"mc"``: ``F = (1/(n k)) sum_i sum_j g_{i, c_ij}^2`` with ``c_ij ~ p(. | x_i)``, ``k`` labels per
  sample drawn with an explicit key: an unbiased estimate of ``"true"``.

Squares are element-wise; ``F`` has the shapes of ``params``. Everything is per sample, in eval mode.
Since ``grad_theta log p_c = J^T (e_c - p)`` with ``J`` the logits' Jacobian, every kind is a sum of
squared per-sample vector-Jacobian products ``J_i^T u`` with cotangents ``u = sqrt(p_ic) (e_c - p_i)``
(true: C of them per sample, one backward each), ``e_{y_i} - p_i`` (empirical) or
``(e_{c_ij} - p_i) / sqrt(k)`` (mc); the layer-wise engine squares and sums them layer by layer
without a per-sample Python loop.

:func:`legacy_batch_mean_fisher` is torchunlearn's (and Golatkar et al.'s code with batch size > 1)
estimator ``(1/N_b) sum_batches sum_c pbar_c * (grad mean_batch CE(., c))^2``: the square of a
batch-mean gradient, which cross-sample cancellation makes smaller. For comparison only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from funlearn import tree
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.second_order.per_sample import (
    _check_batch,
    _check_chunk,
    _chunks,
    resolve_engine,
)

__all__ = ["fisher_diagonal", "legacy_batch_mean_fisher"]

FisherKind = Literal["true", "empirical", "mc"]


def _cotangents(kind: str, y: Tensor, uniforms: Tensor | None) -> Callable[[Tensor], list[Tensor]]:
    """``logits (B, C) -> [U (B, C), ...]`` whose squared VJPs sum to the kind's Fisher terms."""

    def cot(z: Tensor) -> list[Tensor]:
        p = torch.softmax(z.detach(), -1)
        eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
        if kind == "true":
            return [p[:, c : c + 1].sqrt() * (eye[c] - p) for c in range(p.shape[-1])]
        if kind == "empirical":
            return [eye[y] - p]
        # inverse-CDF sampling from uniforms drawn per batch: independent of chunking
        cdf = p.cumsum(-1)
        labels = torch.searchsorted(cdf, (uniforms * cdf[:, -1:]).contiguous()).clamp_max(p.shape[-1] - 1)
        k = labels.shape[1]
        return [(eye[labels[:, j]] - p) / k**0.5 for j in range(k)]

    return cot


def _vmap_sq_sum(model: FunctionalModel, params: Params, buffers: Buffers, x: Tensor, us: list[Tensor]) -> Params:
    """``sum_{u, b} (J_b^T u_b)^2`` with ``vmap`` over samples and cotangents (the fallback path),
    a few samples at a time so that the ``samples x cotangents x params`` gradients stay bounded."""
    us_t = torch.stack(us, 1)  # (B, M, C)
    params = tree.detach(params)

    def one(xb: Tensor, ub: Tensor) -> Params:
        _, vjp_fn = torch.func.vjp(lambda p: model.logits(p, buffers, xb.unsqueeze(0))[0], params)
        grads = torch.func.vmap(vjp_fn)(ub)[0]
        return {k: v.square().sum(0) for k, v in grads.items()}

    rows = max(1, (1 << 27) // (len(us) * tree.num_elements(params)))
    total = tree.zeros_like(params)
    for start in range(0, x.shape[0], rows):
        per = torch.func.vmap(one)(x[start : start + rows], us_t[start : start + rows])
        total = tree.add(total, {k: v.sum(0) for k, v in per.items()})
    return total


def fisher_diagonal(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    data: Iterable[tuple[Tensor, Tensor]],
    kind: FisherKind = "true",
    *,
    samples: int = 1,
    key: torch.Generator | None = None,
    chunk_size: int | None = None,
    strategy: Literal["auto", "layerwise", "vmap"] = "auto",
    progress: bool = False,
) -> Params:
    """The diagonal Fisher ``F`` (shaped like ``params``), averaged over every sample of ``data``.

    ``data`` yields ``(x, y)`` batches (``y`` is used by ``"empirical"`` only). ``"mc"`` draws
    ``samples`` labels per sample from ``key`` (a ``torch.Generator``, e.g.
    ``funlearn.random.key(seed)``). ``chunk_size`` bounds the samples per forward; ``strategy`` as
    in :func:`~funlearn.second_order.per_sample.per_sample_grads`.

    Cost: one forward plus one backward per cotangent per batch (C for ``"true"``, ``samples``
    for ``"mc"``, 1 for ``"empirical"``), plus the per-sample products.
    """
    if kind not in ("true", "empirical", "mc"):
        raise ValueError(f"kind must be 'true', 'empirical' or 'mc', got {kind!r}")
    if strategy not in ("auto", "layerwise", "vmap"):
        raise ValueError(f"strategy must be 'auto', 'layerwise' or 'vmap', got {strategy!r}")
    if kind == "mc":
        if not isinstance(key, torch.Generator):
            raise ValueError("kind='mc' draws labels: pass key=funlearn.random.key(seed) (a torch.Generator)")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
    _check_chunk(chunk_size)
    total, n, engine = tree.zeros_like(params), 0, None
    for i, batch in enumerate(tqdm(data, desc=f"fisher ({kind})", disable=not progress, leave=False)):
        x, y = _check_batch(batch, "each batch of data")
        if i == 0:
            engine = resolve_engine(model, params, buffers, (x, y), strategy)
        uniforms = None
        if kind == "mc":
            uniforms = torch.rand(x.shape[0], samples, generator=key, device=key.device).to(x.device, x.dtype)
        for start, (xc, yc) in zip(range(0, x.shape[0], chunk_size or x.shape[0]), _chunks((x, y), chunk_size)):
            u = None if uniforms is None else uniforms[start : start + xc.shape[0]]
            cot = _cotangents(kind, yc, u)
            if engine is not None:
                part = engine.sq_sum(params, buffers, xc, cot)
            else:
                part = _vmap_sq_sum(model, params, buffers, xc, cot(model.logits(tree.detach(params), buffers, xc)))
            total = tree.add(total, part)
        n += x.shape[0]
    if n == 0:
        raise ValueError("data yielded no samples")
    return tree.scale(total, 1.0 / n)


def legacy_batch_mean_fisher(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    data: Iterable[tuple[Tensor, Tensor]],
    *,
    progress: bool = False,
) -> Params:
    """torchunlearn's ``FisherForget.get_hessian``: ``(1/N_b) sum_b sum_c pbar_bc * gbar_bc^2``.

    ``pbar_bc`` is the batch-mean probability of class c and ``gbar_bc`` the gradient of the
    batch-mean cross-entropy towards class c (C backward passes per batch). Not the per-sample
    Fisher unless the batch size is 1 (methods.md 1.17, defect N1); for comparison only.
    """
    total, batches = tree.zeros_like(params), 0
    for batch in tqdm(data, desc="fisher (legacy)", disable=not progress, leave=False):
        x, _ = _check_batch(batch, "each batch of data")
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        with torch.enable_grad():
            logits = model.logits(leaves, buffers, x)
            pbar = torch.softmax(logits.detach(), -1).mean(0)
            for c in range(logits.shape[-1]):
                target = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
                grads = torch.autograd.grad(F.cross_entropy(logits, target), list(leaves.values()),
                                            retain_graph=c < logits.shape[-1] - 1, allow_unused=True)  # fmt: skip
                for k, g in zip(leaves, grads):
                    if g is not None:
                        total[k] = total[k] + pbar[c] * g.square()
        batches += 1
    if batches == 0:
        raise ValueError("data yielded no batches")
    return tree.scale(total, 1.0 / batches)
