"""Distances between two models' predictions on the same samples, and ZRF.

* **JS divergence** ``JS(p, q) = KL(p || m)/2 + KL(q || m)/2`` with ``m = (p + q)/2``, in bits (log
  base 2), so it lies in [0, 1]: 0 for identical predictive distributions. Against the retrained
  model's predictions, lower is better.
* **Prediction agreement**: % of samples where both models predict the same class (argmax).
  Against the retrained model, higher is better (100 = same decisions).
* **ZRF** (Zero Retrain Forgetting; Chundawat et al. 2023, "Can Bad Teaching Induce Forgetting?"):
  ``ZRF = 1 - mean_i JS(p_model(x_i), p_random(x_i))`` over the forget set, with ``p_random`` a
  randomly initialised model of the same architecture (:func:`~funlearn.random_init`, seeded).
  In [0, 1]: 1 means the model answers like a random network on the forget set. Its target is the
  retrained model's value.
* ``zrf_cosine_legacy`` reproduces torchunlearn's "ZRF" for parity: batch means of the cosine
  similarity of raw logits, rescaled to [0, 1] and averaged over batches without weighting.

Both sets of predictions must be row-aligned (the same samples in the same order); their labels
are checked (torchunlearn never checked them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from funlearn.evaluation.predictions import Predictions

__all__ = ["js_divergence", "mean_js_divergence", "prediction_agreement", "zrf_cosine_legacy", "zrf_score"]


def _check_aligned(a: Predictions, b: Predictions) -> None:
    if a.logits.shape != b.logits.shape:
        raise ValueError(
            f"predictions must cover the same samples and classes, got logits {tuple(a.logits.shape)} "
            f"and {tuple(b.logits.shape)}"
        )
    if not torch.equal(a.labels, b.labels):
        raise ValueError(
            "predictions are not row-aligned (their labels differ): collect both on the same unshuffled "
            "loader, with the same limit and seed"
        )


def js_divergence(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Per-row Jensen-Shannon divergence in bits between ``softmax(logits_p)`` and ``softmax(logits_q)``, (N,)."""
    log_p = torch.log_softmax(logits_p.double(), dim=-1)
    log_q = torch.log_softmax(logits_q.double(), dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return (0.5 * (kl_pm + kl_qm) / math.log(2)).clamp(0.0, 1.0)


def mean_js_divergence(a: Predictions, b: Predictions) -> float:
    """Mean over samples of :func:`js_divergence` between two models' row-aligned predictions, in [0, 1]."""
    _check_aligned(a, b)
    return float(js_divergence(a.logits, b.logits).mean())


def prediction_agreement(a: Predictions, b: Predictions) -> float:
    """% of samples where the two models' argmax predictions agree."""
    _check_aligned(a, b)
    return 100.0 * float((a.logits.argmax(1) == b.logits.argmax(1)).double().mean())


def zrf_score(model: Predictions, random_model: Predictions) -> float:
    """``1 - mean JS(p_model, p_random)`` on the forget set (Chundawat et al. 2023), in [0, 1]."""
    return 1.0 - mean_js_divergence(model, random_model)


def zrf_cosine_legacy(model: Predictions, random_model: Predictions, *, batch_size: int) -> float:
    """torchunlearn's ZRF: mean over consecutive batches of ``(mean_b cos(z_model, z_random) + 1) / 2``.

    ``cos`` is the cosine similarity (eps 1e-8) of raw logit vectors; every batch of ``batch_size``
    rows (the last may be shorter) counts equally, as in torchunlearn's loop over loader batches.
    """
    _check_aligned(model, random_model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (got {batch_size!r})")
    cos = F.cosine_similarity(model.logits.double(), random_model.logits.double(), dim=1, eps=1e-8)
    batch = torch.arange(cos.shape[0]) // batch_size
    batch_means = (
        torch.zeros(int(batch[-1]) + 1, dtype=cos.dtype).index_add_(0, batch, cos) / batch.bincount()
    )
    return float(((batch_means + 1) / 2).mean())
