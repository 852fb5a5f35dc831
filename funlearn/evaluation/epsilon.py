"""The per-example epsilon forgetting score of the NeurIPS 2023 Machine Unlearning Challenge.

Reference: Triantafillou et al., "Are we making progress in unlearning? Findings from the first
NeurIPS unlearning competition" (arXiv 2406.09073); the official ``metric.py`` of
google-deepmind/unlearning_evaluation. Given ``M`` unlearned models and ``M`` models retrained from
scratch without the forget set (several seeds each):

1. **Score** every forget example under every model by its logit-scaled confidence
   ``s = log p_y - log(1 - p_y) = z_y - logsumexp_{c != y} z_c`` (LiRA's statistic).
2. **Epsilon per example.** The two samples of ``M`` scores (unlearned vs retrained) are separated
   by every threshold of two decision-rule families on a grid of 100 thresholds per unit: one
   threshold (``s >= t`` predicts the side with the larger median), and an interval ``l <= s <= r``
   around the peakier sample (right ends from ``max - 2`` to ``max + 2``, widths within 2 of its
   range). For each rule, with false positive and false negative rates FPR, FNR and ``delta=1e-5``:
   ``eps = max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)`` clipped at 0;
   FPR = FNR = 0 gives infinity, rules where exactly one of them is 0 are dropped. The example's
   epsilon is the largest over the rules, capped at 50; it is 50 outright when one sample's range is
   below 1% of the other's (a collapsed distribution).
3. **Points.** Epsilon falls in a bin of width 0.5 worth 1, 1/2, 1/4, ... for the bins up to
   ``ceil(ln(M - 1))`` (14 bins up to 7 for M = 512), and 0 beyond. The forget score F is the mean of
   the points over the forget examples, in [0, 1]: higher is better (1: indistinguishable from
   retraining at every example).
4. **Final score** = ``F * (RA_unlearned / RA_retrained) * (TA_unlearned / TA_retrained)`` with
   accuracies averaged over the models.

Differences from ``metric.py`` (none change a bin except at a float32 rounding boundary): everything is
float64 (the official rates are float32), the confidence is computed exactly (no ``+1e-45``), an
example where every rule is dropped gets epsilon 0 (the official code asserts), and the work is
vectorised over examples in chunks instead of one Python iteration per example (about 5 s per 1000
forget examples on one CPU core, on the scores' device when they live on a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from funlearn.evaluation.metrics import accuracy_percent
from funlearn.evaluation.predictions import ModelPredictions, Predictions

__all__ = [
    "ChallengeScore",
    "challenge_score",
    "epsilon_points",
    "forget_score",
    "logit_scaled_confidence",
    "per_example_epsilon",
]

DELTA = 1e-5
EPSILON_CAP = 50.0
BIN_WIDTH = 0.5
_BUFFER = 2.0  # the interval rule's slack around the peakier sample, in score units
_CHUNK_ELEMENTS = 1 << 22  # thresholds x examples evaluated at once (bounds memory to ~100 MB)


@dataclass(frozen=True, eq=False)
class ChallengeScore:
    """``final = forget_score * retain_ratio * test_ratio``; ``epsilons`` per forget example ``(E,)``."""

    final: float
    forget_score: float
    retain_ratio: float
    test_ratio: float
    epsilons: Tensor


def logit_scaled_confidence(predictions: Predictions) -> Tensor:
    """``log p_y - log(1 - p_y) = z_y - logsumexp_{c != y} z_c`` per row, float64 ``(N,)``."""
    z = predictions.logits.double()
    z_true = z.gather(1, predictions.labels[:, None]).squeeze(1)
    others = z.scatter(1, predictions.labels[:, None], float("-inf"))
    return z_true - torch.logsumexp(others, dim=1)


def _linspace(start: Tensor, stop: Tensor, steps: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Row-wise ``numpy.linspace(start, stop, steps)`` padded to ``width`` columns, and its valid mask.

    ``start``, ``stop``, ``steps`` have shape ``(...,)``; the result ``(..., width)``.
    """
    i = torch.arange(width, dtype=start.dtype, device=start.device)
    step = (stop - start) / (steps - 1).clamp_min(1).to(start.dtype)
    values = start[..., None] + i * step[..., None]
    last = (steps - 1).clamp_min(0)[..., None]
    values = torch.where((i == last) & (steps[..., None] > 1), stop[..., None], values)
    return values, i < steps[..., None]


def _count_below(sorted_scores: Tensor, values: Tensor, *, inclusive: bool) -> Tensor:
    """Per row, how many scores are ``< values`` (or ``<=`` when ``inclusive``); shapes (E, M), (E, ...)."""
    flat = values.reshape(values.shape[0], -1).contiguous()
    counts = torch.searchsorted(sorted_scores, flat, side="right" if inclusive else "left")
    return counts.reshape(values.shape)


def _epsilon_table(num_models: int, delta: float, device: torch.device) -> Tensor:
    """A rule's epsilon from its counts, flattened: entry ``tp * (M + 1) + fp`` for ``tp`` of the ``M``
    positive and ``fp`` of the ``M`` negative scores predicted positive; a last entry -inf pads.

    FPR = FNR = 0 gives inf. A rule with exactly one of them 0, or with both logs undefined, is
    dropped: -inf never wins the maximum (an example with no kept rule gets 0).
    """
    rate = torch.arange(num_models + 1, dtype=torch.float64, device=device) / num_models
    fnr, fpr = (1 - rate)[:, None], rate[None, :]
    eps = torch.fmax(  # fmax ignores one NaN; NaN (both logs undefined) survives the clamp
        torch.log(1 - delta - fpr) - torch.log(fnr), torch.log(1 - delta - fnr) - torch.log(fpr)
    ).clamp_min(0.0)
    both_zero = (fpr == 0) & (fnr == 0)
    eps = torch.where(both_zero, math.inf, eps)
    eps = torch.where((fpr * fnr == 0) & ~both_zero, math.nan, eps).nan_to_num(nan=-math.inf)
    return torch.cat([eps.flatten(), eps.new_full((1,), -math.inf)])


def _single_threshold_rules(pos: Tensor, neg: Tensor, per_unit: int) -> Tensor:
    """Rules ``s >= t`` => positive, ``per_unit`` thresholds per unit over the scores' range: (E, T) indices."""
    both = torch.cat([pos, neg], dim=1)
    lo, hi = both.min(dim=1).values, both.max(dim=1).values
    steps = torch.ceil((hi - lo) * per_unit).long()
    t, valid = _linspace(lo, hi, steps, int(steps.max()))
    m = pos.shape[1]
    tp = m - _count_below(pos.sort(dim=1).values, t, inclusive=False)
    fp = m - _count_below(neg.sort(dim=1).values, t, inclusive=False)
    return torch.where(valid, tp * (m + 1) + fp, (m + 1) ** 2)


def _interval_rules(pos: Tensor, neg: Tensor, per_unit: int) -> Tensor:
    """Rules ``l <= s <= r`` => the peakier sample (smaller range), on the official grid: (E, R*L) indices."""
    pos_range = pos.max(dim=1).values - pos.min(dim=1).values
    neg_range = neg.max(dim=1).values - neg.min(dim=1).values
    swap = (pos_range >= neg_range)[:, None]
    peaky, other = torch.where(swap, neg, pos), torch.where(swap, pos, neg)
    width = torch.minimum(pos_range, neg_range)
    r_lo = peaky.min(dim=1).values + width - _BUFFER
    r_hi = peaky.max(dim=1).values + _BUFFER
    r_steps = torch.ceil((r_hi - r_lo) * per_unit).long()
    right, r_valid = _linspace(r_lo, r_hi, r_steps, int(r_steps.max()))  # (E, R)
    num_left = math.ceil(2 * _BUFFER * per_unit)
    start, stop = right - width[:, None] - _BUFFER, right - width[:, None] + _BUFFER
    left, _ = _linspace(start, stop, torch.full_like(r_steps[:, None], num_left).expand_as(right), num_left)
    inside = []
    for sample in (peaky, other):
        s = sample.sort(dim=1).values
        count = _count_below(s, right, inclusive=True)[..., None] - _count_below(s, left, inclusive=False)
        inside.append(count.clamp_min(0))  # an empty interval (l > r) holds nothing
    m = pos.shape[1]
    return torch.where(r_valid[..., None], inside[0] * (m + 1) + inside[1], (m + 1) ** 2).flatten(1)


def per_example_epsilon(
    unlearned: Tensor,
    retrained: Tensor,
    *,
    delta: float = DELTA,
    thresholds_per_unit: int = 100,
) -> Tensor:
    """The challenge's epsilon of every forget example (see the module docstring), float64 ``(E,)``.

    ``unlearned`` and ``retrained`` are logit-scaled confidences ``(M, E)``: ``M`` models (the same
    number on both sides, at least 3), ``E`` forget examples in the same order.
    """
    if unlearned.dim() != 2 or unlearned.shape != retrained.shape:
        raise ValueError(
            f"unlearned and retrained scores must both be (models, examples), got "
            f"{tuple(unlearned.shape)} and {tuple(retrained.shape)}"
        )
    if unlearned.shape[0] < 3:
        raise ValueError(f"the epsilon score needs at least 3 models per side (got {unlearned.shape[0]})")
    if not (0 < delta < 1):
        raise ValueError(f"delta must lie in (0, 1) (got {delta})")
    if (
        isinstance(thresholds_per_unit, bool)
        or not isinstance(thresholds_per_unit, int)
        or thresholds_per_unit < 1
    ):
        raise ValueError(f"thresholds_per_unit must be a positive int (got {thresholds_per_unit!r})")
    if not bool(torch.isfinite(unlearned).all() & torch.isfinite(retrained).all()):
        raise ValueError("scores contain NaN or inf")
    u, r = unlearned.double().T, retrained.double().T  # (E, M)
    retrain_is_positive = (r.quantile(0.5, dim=1) > u.quantile(0.5, dim=1))[:, None]
    pos = torch.where(retrain_is_positive, r, u).contiguous()
    neg = torch.where(retrain_is_positive, u, r).contiguous()
    pos_range = pos.max(dim=1).values - pos.min(dim=1).values
    neg_range = neg.max(dim=1).values - neg.min(dim=1).values
    collapsed = torch.minimum(pos_range, neg_range) / torch.maximum(pos_range, neg_range) < 0.01

    both = torch.cat([pos, neg], dim=1)
    thresholds = int(
        torch.ceil((both.max(dim=1).values - both.min(dim=1).values) * thresholds_per_unit).max()
    )
    num_left = math.ceil(2 * _BUFFER * thresholds_per_unit)
    rules_per_example = thresholds + (num_left + 1) * num_left  # one-threshold plus interval rules
    chunk = max(1, _CHUNK_ELEMENTS // rules_per_example)
    table = _epsilon_table(pos.shape[1], delta, pos.device)
    out = []
    for start in range(0, u.shape[0], chunk):  # chunks of examples, bounding memory
        p, n = pos[start : start + chunk], neg[start : start + chunk]
        rules = torch.cat(
            [_single_threshold_rules(p, n, thresholds_per_unit), _interval_rules(p, n, thresholds_per_unit)],
            dim=1,
        )
        out.append(table[rules].max(dim=1).values.clamp_min(0.0))
    eps = torch.cat(out).clamp_max(EPSILON_CAP)
    return torch.where(collapsed, EPSILON_CAP, eps)


def epsilon_points(epsilons: Tensor, num_models: int) -> Tensor:
    """Points per example: ``2**-k`` for ``eps`` in ``[k/2, (k+1)/2)`` while ``(k+1)/2 <= ceil(ln(M-1))``, else 0."""
    if num_models < 3:
        raise ValueError(f"the epsilon score needs at least 3 models per side (got {num_models})")
    num_bins = int(math.ceil(math.log(num_models - 1)) / BIN_WIDTH)
    k = torch.floor(epsilons.double() / BIN_WIDTH)
    return torch.where(k < num_bins, torch.exp2(-k), torch.zeros_like(k))


def forget_score(
    unlearned: Tensor, retrained: Tensor, *, delta: float = DELTA, thresholds_per_unit: int = 100
) -> float:
    """F: mean over forget examples of :func:`epsilon_points` of :func:`per_example_epsilon`, in [0, 1]."""
    eps = per_example_epsilon(unlearned, retrained, delta=delta, thresholds_per_unit=thresholds_per_unit)
    return float(epsilon_points(eps, unlearned.shape[0]).mean())


def challenge_score(
    unlearned: Sequence[ModelPredictions],
    retrained: Sequence[ModelPredictions],
    *,
    delta: float = DELTA,
    thresholds_per_unit: int = 100,
) -> ChallengeScore:
    """The challenge's final score of several unlearned models against several retrained ones.

    Each element holds one model's predictions (same forget set, same order everywhere). Retain and
    test accuracies are averaged over the models of each side.
    """
    models = [*unlearned, *retrained]
    if not unlearned or len(unlearned) != len(retrained):
        raise ValueError(
            f"give the same number of unlearned and retrained models (got {len(unlearned)} and {len(retrained)})"
        )
    labels = models[0].forget.labels
    if any(not torch.equal(m.forget.labels, labels) for m in models):
        raise ValueError("the models' forget predictions are not row-aligned (their labels differ)")

    def scores(side: Sequence[ModelPredictions]) -> Tensor:
        return torch.stack([logit_scaled_confidence(m.forget) for m in side])

    def mean_accuracy(side: Sequence[ModelPredictions], name: str) -> float:
        return sum(accuracy_percent(getattr(m, name)) for m in side) / len(side)

    eps = per_example_epsilon(
        scores(unlearned), scores(retrained), delta=delta, thresholds_per_unit=thresholds_per_unit
    )
    f = float(epsilon_points(eps, len(unlearned)).mean())
    ratios = [mean_accuracy(unlearned, n) / mean_accuracy(retrained, n) for n in ("retain", "test")]
    return ChallengeScore(
        final=f * ratios[0] * ratios[1],
        forget_score=f,
        retain_ratio=ratios[0],
        test_ratio=ratios[1],
        epsilons=eps,
    )
