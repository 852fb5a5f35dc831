"""Relabellers: new labels for the forget split, ``relabel(params, buffers, x, y, key) -> ỹ``.

They are called without gradient by :func:`~funlearn.methods.objectives.forget_ce` and are fully
vectorised (no per-sample Python loop, no host sync; torchunlearn's BoundaryShrink looped over
samples with ``.item()``).

- :func:`uniform_relabel` (RandomLabel, SalUn): ``ỹ_i ~ Uniform{0..C-1}``, or uniform over the
  ``C-1`` wrong classes, drawn from the step's key;
- :func:`best_wrong_class` (torchunlearn's BoundaryShrink, as a ``logit_relabel`` of
  :func:`~funlearn.methods.objectives.forget_ce`): the current model's best wrong class;
- :func:`fgsm_relabel` (BoundaryShrink, Chen et al., CVPR 2023): the original model's best wrong class
  at an FGSM neighbour ``x + ε sign(∇_x CE(f_0(x), y))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from funlearn.losses import cross_entropy
from funlearn.methods.objectives import Relabel
from funlearn.model import Buffers, FunctionalModel, Params

__all__ = ["random_labels", "uniform_relabel", "fgsm_relabel", "best_wrong_class"]


def random_labels(y: Tensor, num_classes: int, key: torch.Generator, *, exclude_true: bool = False) -> Tensor:
    """Uniform random labels shaped like ``y``, drawn on the key's device and moved to ``y``'s.

    With ``exclude_true``: ``r ~ Uniform{0..C-2}``, ``ỹ = r + [r >= y]``, uniform over the classes
    other than ``y`` (never the true label).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 to relabel, got {num_classes}")
    high = num_classes - 1 if exclude_true else num_classes
    r = torch.randint(0, high, y.shape, generator=key, device=key.device).to(y.device)
    return r + (r >= y).to(r.dtype) if exclude_true else r


def uniform_relabel(num_classes: int, *, exclude_true: bool = False) -> Relabel:
    """Relabeller drawing :func:`random_labels` afresh at every step from the step's key."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 to relabel, got {num_classes}")

    def relabel(params, buffers, x, y, key):
        return random_labels(y, num_classes, key, exclude_true=exclude_true)

    return relabel


def best_wrong_class(logits: Tensor, y: Tensor) -> Tensor:
    """``argmax_{c != y_i} logits[i, c]`` for every row (the true class masked to ``-inf``)."""
    masked = logits.scatter(1, y.unsqueeze(1), float("-inf"))
    return masked.argmax(1)


def fgsm_relabel(
    model: FunctionalModel,
    original_params: Params,
    original_buffers: Buffers,
    eps: float,
    *,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> Relabel:
    """Nearest wrong class by one FGSM step on the **original** model ``f_0`` (eval mode).

    ``x' = clip(x + ε sign(∇_x CE(f_0(x), y)))`` and ``ỹ = argmax_{c != y} f_0(x')_c``. Chen et al.
    (Boundary Unlearning, CVPR 2023) take the plain argmax at ``x'``, which is the true class when
    the attack fails; funlearn excludes the true class, as their "nearest but incorrect" label
    requires. ``ε`` and ``clip`` are in the data's space (funlearn data are pixels in [0, 1]; the
    model normalises inside); ``clip=None`` leaves ``x'`` unclipped.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive (the FGSM step size in input space), got {eps}")

    def relabel(params, buffers, x, y, key):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            loss = cross_entropy(model.logits(original_params, original_buffers, x_in), y, reduction="none").sum()
            (grad_x,) = torch.autograd.grad(loss, x_in)
        x_adv = x + eps * grad_x.sign()
        if clip is not None:
            x_adv = x_adv.clamp(*clip)
        return best_wrong_class(model.logits(original_params, original_buffers, x_adv), y)

    return relabel
