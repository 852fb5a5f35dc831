"""The NeurIPS 2023 unlearning challenge's epsilon score: hand computations and a per-example loop port."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import funlearn as fl

DELTA = 1e-5


def naive_epsilons(unlearned: np.ndarray, retrained: np.ndarray, per_unit: int) -> np.ndarray:
    """The challenge's metric.py written as plain loops over examples and thresholds (the reference)."""
    out = []
    for u, r in zip(unlearned.T, retrained.T, strict=True):
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        pos_range, neg_range = np.ptp(pos), np.ptp(neg)
        if max(pos_range, neg_range) > 0 and min(pos_range, neg_range) / max(pos_range, neg_range) < 0.01:
            out.append(50.0)
            continue
        rates = []  # (fpr, fnr) of every rule
        lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
        for t in np.linspace(lo, hi, math.ceil((hi - lo) * per_unit)):
            rates.append((np.mean(neg >= t), np.mean(pos < t)))
        peaky, other = (neg, pos) if pos_range >= neg_range else (pos, neg)
        w = min(pos_range, neg_range)
        r_lo, r_hi = peaky.min() + w - 2.0, peaky.max() + 2.0
        for right in np.linspace(r_lo, r_hi, math.ceil((r_hi - r_lo) * per_unit)):
            for left in np.linspace(right - w - 2.0, right - w + 2.0, math.ceil(4.0 * per_unit)):
                tpr = np.mean((left <= peaky) & (peaky <= right))
                rates.append((np.mean((left <= other) & (other <= right)), 1 - tpr))
        best = 0.0
        for fpr, fnr in rates:
            if fpr == 0 and fnr == 0:
                best = math.inf
            elif fpr * fnr > 0:
                terms = [
                    math.log(1 - DELTA - a) - math.log(b)
                    for a, b in ((fpr, fnr), (fnr, fpr))
                    if 1 - DELTA - a > 0
                ]
                best = max([best, *terms])
        out.append(min(best, 50.0))
    return np.array(out)


def test_logit_scaled_confidence_is_log_p_over_one_minus_p():
    g = torch.Generator().manual_seed(0)
    logits, labels = (
        torch.randn(30, 5, generator=g, dtype=torch.float64) * 3,
        torch.randint(0, 5, (30,), generator=g),
    )
    p = torch.softmax(logits, 1)[torch.arange(30), labels]
    expected = torch.log(p) - torch.log1p(-p)
    torch.testing.assert_close(fl.logit_scaled_confidence(fl.Predictions(logits, labels)), expected)
    extreme = fl.Predictions(torch.tensor([[200.0, 0.0]]), torch.tensor([0]))  # p_y = 1 in float64
    assert float(fl.logit_scaled_confidence(extreme)) == pytest.approx(200.0)


# Three models per side, four forget examples (columns).
UNLEARNED = [[0.0, 0.0, 5.0, 10.0], [1.0, 1.0, 5.0, 11.0], [2.0, 2.0, 5.001, 12.0]]
RETRAINED = [[0.5, 0.0, 0.0, 0.0], [1.5, 1.0, 1.0, 1.0], [2.5, 2.0, 2.0, 2.0]]


def test_epsilons_on_toy_distributions_match_a_hand_computation():
    eps = fl.per_example_epsilon(torch.tensor(UNLEARNED), torch.tensor(RETRAINED))
    # 0: a threshold in (1, 1.5] flags 2 of 3 retrained and 1 of 3 unlearned models: FPR = FNR = 1/3,
    #    eps = log(1 - delta - 1/3) - log(1/3); no rule does better with three models a side.
    # 1: identical samples: every rule has FPR = TPR, so eps <= 0, clipped to 0.
    # 2: the unlearned scores are collapsed (range 0.001 < 1% of 2): eps = 50.
    # 3: perfectly separated (FPR = FNR = 0 at a threshold between 2 and 10): eps = inf, capped at 50.
    expected = [math.log(2 / 3 - DELTA) - math.log(1 / 3), 0.0, 50.0, 50.0]
    torch.testing.assert_close(eps, torch.tensor(expected, dtype=torch.float64))
    # M = 3 models: ceil(ln 2) = 1, so bins [0, 0.5) -> 1 and [0.5, 1) -> 1/2; beyond -> 0
    points = fl.epsilon_points(eps, 3)
    torch.testing.assert_close(points, torch.tensor([0.5, 1.0, 0.0, 0.0], dtype=torch.float64))
    assert fl.forget_score(torch.tensor(UNLEARNED), torch.tensor(RETRAINED)) == pytest.approx(1.5 / 4)


def test_points_follow_the_half_wide_bins_up_to_ceil_log_m_minus_one():
    eps = torch.tensor([0.0, 0.49, 0.5, 1.2, 6.9, 7.0, 50.0])
    # 512 models: ceil(ln 511) = 7, bins [k/2, (k+1)/2) worth 2^-k for k = 0..13
    expected = torch.tensor([1.0, 1.0, 0.5, 0.25, 2.0**-13, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(fl.epsilon_points(eps, 512), expected)


@pytest.mark.parametrize("per_unit", [10, 15])
def test_vectorised_epsilons_equal_the_per_example_loop(per_unit):
    g = torch.Generator().manual_seed(per_unit)
    m, e = 8, 16
    spread = 0.5 + 2 * torch.rand(e, generator=g, dtype=torch.float64)
    unlearned = torch.randn(m, e, generator=g, dtype=torch.float64) * spread
    retrained = torch.randn(m, e, generator=g, dtype=torch.float64) + torch.linspace(
        -2, 2, e, dtype=torch.float64
    )
    unlearned[:, 0] = 3.0 + 1e-4 * torch.arange(m)  # one collapsed sample
    ours = fl.per_example_epsilon(unlearned, retrained, thresholds_per_unit=per_unit)
    reference = naive_epsilons(unlearned.numpy(), retrained.numpy(), per_unit)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-9, atol=1e-12)
    assert len(set(np.round(reference, 6))) >= 5  # the cases exercise several different epsilons


def _two_class(scores: list[float]) -> fl.Predictions:
    """Logits (s, 0) with label 0: logit-scaled confidence exactly s."""
    s = torch.tensor(scores, dtype=torch.float64)
    return fl.Predictions(
        torch.stack([s, torch.zeros_like(s)], 1), torch.zeros(len(scores), dtype=torch.long)
    )


def _with_accuracy(correct: int, total: int = 10) -> fl.Predictions:
    labels = torch.zeros(total, dtype=torch.long)
    logits = torch.zeros(total, 2)
    logits[:correct, 0], logits[correct:, 1] = 1.0, 1.0
    return fl.Predictions(logits, labels)


def test_challenge_score_is_forget_score_times_accuracy_ratios():
    def models(
        scores: list[list[float]], retain_correct: int, test_correct: int
    ) -> list[fl.ModelPredictions]:
        return [
            fl.ModelPredictions(_with_accuracy(retain_correct), _two_class(row), _with_accuracy(test_correct))
            for row in scores
        ]

    score = fl.challenge_score(models(UNLEARNED, 9, 8), models(RETRAINED, 10, 10))
    assert score.forget_score == pytest.approx(0.375)
    assert score.retain_ratio == pytest.approx(0.9) and score.test_ratio == pytest.approx(0.8)
    assert score.final == pytest.approx(0.375 * 0.9 * 0.8)
    assert score.epsilons.shape == (4,)
    with pytest.raises(ValueError, match="same number"):
        fl.challenge_score(models(UNLEARNED, 9, 8), models(RETRAINED, 10, 10)[:2])


def test_epsilon_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 3"):
        fl.per_example_epsilon(torch.zeros(2, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="models, examples"):
        fl.per_example_epsilon(torch.zeros(3, 4), torch.ones(3, 5))
    with pytest.raises(ValueError, match="NaN"):
        fl.per_example_epsilon(torch.full((3, 2), float("nan")), torch.ones(3, 2))
