"""Pure losses on logits.

Every loss takes logits (B, C) and returns per-sample values (B,) with ``reduction="none"`` or their
mean with ``reduction="mean"`` (the default). Objectives over split batches are built from these in
:mod:`funlearn.methods`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy", "kl_to_teacher", "accuracy"]

Reduction = Literal["mean", "none"]


def _reduce(per_sample: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def cross_entropy(
    logits: Tensor, labels: Tensor, *, reduction: Reduction = "mean", label_smoothing: float = 0.0
) -> Tensor:
    """``CE(z, y) = -log softmax(z)_y``; with smoothing eps: ``(1-eps) CE + eps * mean_c(-log p_c)``."""
    per_sample = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
    return _reduce(per_sample, reduction)


def kl_to_teacher(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` per sample; the teacher is the target.

    The mean over the batch equals ``F.kl_div(log_softmax(s/T), softmax(t/T), "batchmean") * T**2``.
    The teacher logits are treated as constants (no gradient flows into them).
    """
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return _reduce(per_sample * temperature**2, reduction)


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Top-1 accuracy in [0, 1] as a 0-d float tensor (0 for an empty batch)."""
    if labels.numel() == 0:
        return torch.zeros((), device=logits.device)
    return (logits.argmax(-1) == labels).float().mean()
