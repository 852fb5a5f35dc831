"""SalUn: RandomLabel restricted to the weights most salient for the forget loss (a saliency mask)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from funlearn import tree
from funlearn.autodiff import value_and_grad
from funlearn.losses import cross_entropy
from funlearn.methods._defaults import literature_sgd, resolve_tx
from funlearn.methods.base import Method
from funlearn.methods.random_label import random_label
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.transforms.base import GradientTransformation, chain, mask_updates
from funlearn.transforms.unlearning import topk_mask

__all__ = ["saliency_scores", "saliency_mask", "salun"]

SaliencyMode = Literal["abs_sum", "batch_abs_mean"]


def saliency_scores(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    forget_batches: Iterable[tuple[Tensor, Tensor]],
    *,
    mode: SaliencyMode = "abs_sum",
    progress: bool = False,
) -> dict[str, Tensor]:
    """Per-weight saliency of the forget loss, a tree shaped like ``params``.

    With ``g_b = ∇_θ mean_{i∈b} CE(f_θ(x_i), y_i)`` (eval mode, true labels) over the forget batches
    ``b`` (``(x, y)`` pairs, e.g. ``loaders["forget_eval"]``):
    ``"abs_sum"`` is ``|Σ_b g_b|`` (Fan et al.'s reference code: signed gradients summed, then the
    magnitude); ``"batch_abs_mean"`` is ``(1/n_b) Σ_b |g_b|`` (torchunlearn's variant).
    """
    if mode not in ("abs_sum", "batch_abs_mean"):
        raise ValueError(f"mode must be 'abs_sum' or 'batch_abs_mean', got {mode!r}")

    def forget_loss(p, x, y):
        return cross_entropy(model.logits(p, buffers, x), y)

    grad_fn = value_and_grad(forget_loss)
    total, count = tree.zeros_like(params), 0
    for item in tqdm(forget_batches, desc="saliency", disable=not progress, leave=False):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"forget_batches must yield (x, y) pairs, got {type(item).__name__}")
        _, grads = grad_fn(params, *item)
        if mode == "batch_abs_mean":
            grads = dict(zip(grads, torch._foreach_abs(list(grads.values()))))
        total = tree.add(total, grads)
        count += 1
    if count == 0:
        raise ValueError("forget_batches yielded no batch; pass the forget split's batches")
    if mode == "abs_sum":
        return dict(zip(total, torch._foreach_abs(list(total.values()))))
    return tree.scale(total, 1.0 / count)


def saliency_mask(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    forget_batches: Iterable[tuple[Tensor, Tensor]],
    *,
    fraction: float = 0.5,
    mode: SaliencyMode = "abs_sum",
    progress: bool = False,
) -> dict[str, Tensor]:
    """Boolean tree, True on exactly ``int(fraction * N)`` weights: the top of :func:`saliency_scores`.

    The cut is by rank with a deterministic tie-break (:func:`~funlearn.transforms.topk_mask`).
    Apply it with ``mask_updates(mask)`` as the **last** transformation.
    """
    scores = saliency_scores(model, params, buffers, forget_batches, mode=mode, progress=progress)
    return topk_mask(scores, fraction)


def salun(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    forget_batches: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    tx: GradientTransformation | None = None,
    *,
    fraction: float = 0.5,
    mode: SaliencyMode = "abs_sum",
    retain_weight: float = 1.0,
    forget_weight: float = 1.0,
    exclude_true: bool = False,
) -> Method:
    """SalUn (Fan et al., ICLR 2024): RandomLabel (:func:`random_label`) on the salient weights only.

    The mask (:func:`saliency_mask` of ``params`` on ``forget_batches``) is computed here, once, and
    applied as ``chain(tx, mask_updates(mask))``: the masked weights get an update of exactly zero, so
    weight decay and momentum cannot move them (the leak fixed in the reference code's PR #33, and
    torchunlearn's T7/T8: its mask is dropped under a minimizer and thresholded by value). Defaults:
    ``fraction = 0.5`` of the weights trainable, ``"abs_sum"`` saliency, ``λ_r = λ_f = 1``, ``tx =
    sgd(0.013, momentum=0.9, weight_decay=5e-4)`` (the reference README's recipe: 10 epochs at 0.013).
    """
    mask = saliency_mask(model, params, buffers, forget_batches, fraction=fraction, mode=mode)
    full = chain(resolve_tx(tx, literature_sgd(0.013)), mask_updates(mask))
    return random_label(
        model, num_classes, full, retain_weight=retain_weight, forget_weight=forget_weight, exclude_true=exclude_true
    )
