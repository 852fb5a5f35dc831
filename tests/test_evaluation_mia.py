"""Membership-inference attacks on constructed confidences: no-information and perfectly separable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import funlearn as fl

NUM_CLASSES = 4


def with_confidence(confidence: torch.Tensor, seed: int = 0) -> fl.Predictions:
    """Predictions whose softmax probability of the (random) true class is exactly ``confidence``."""
    n = confidence.numel()
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=torch.Generator().manual_seed(seed))
    rest = torch.log((1 - confidence.double()) / (NUM_CLASSES - 1))
    logits = rest[:, None].repeat(1, NUM_CLASSES)
    logits[torch.arange(n), labels] = torch.log(confidence.double())
    return fl.Predictions(logits, labels)


def uniform(n: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_true_class_confidence_is_the_softmax_of_the_label():
    conf = uniform(20, 0.3, 0.99, 1)
    torch.testing.assert_close(fl.true_class_confidence(with_confidence(conf)), conf)


def test_mia_efficacy_extremes_on_separable_confidences():
    retain = with_confidence(uniform(300, 0.95, 0.999, 1), seed=1)  # members: confident
    test = with_confidence(uniform(300, 0.30, 0.60, 2), seed=2)  # non-members: unsure
    looks_unseen = with_confidence(uniform(100, 0.35, 0.55, 3), seed=3)
    looks_trained = with_confidence(uniform(100, 0.96, 0.99, 4), seed=4)
    forgotten = fl.mia_efficacy(retain, looks_unseen, test)
    remembered = fl.mia_efficacy(retain, looks_trained, test)
    assert forgotten.attack_accuracy == 100.0 and forgotten.samples_per_side == 300
    assert forgotten.efficacy == 100.0  # every forget sample predicted non-member
    assert remembered.efficacy == 0.0
    half = with_confidence(torch.cat([uniform(50, 0.35, 0.55, 5), uniform(50, 0.96, 0.99, 6)]), seed=5)
    assert fl.mia_efficacy(retain, half, test).efficacy == 50.0


def test_mia_on_identical_distributions_has_no_information():
    conf = uniform(400, 0.2, 0.99, 7)
    retain = test = with_confidence(conf, seed=1)  # the same confidences (and classes) on both sides
    result = fl.mia_efficacy(retain, with_confidence(conf, seed=3), test)
    # each value is a member once and a non-member once: any classifier is right exactly half the time
    assert result.attack_accuracy == pytest.approx(50.0)


def test_mia_balances_with_a_seeded_stratified_subsample():
    retain = with_confidence(uniform(900, 0.9, 0.99, 1), seed=1)
    test = with_confidence(uniform(200, 0.3, 0.6, 2), seed=2)
    forget = with_confidence(uniform(50, 0.3, 0.99, 3), seed=3)
    a = fl.mia_efficacy(retain, forget, test, max_samples=100, seed=3)
    assert a.samples_per_side == 100
    assert a == fl.mia_efficacy(retain, forget, test, max_samples=100, seed=3)  # deterministic
    assert fl.mia_efficacy(retain, forget, test).samples_per_side == 200  # min(|retain|, |test|)
    from funlearn.evaluation.mia import _balanced_index

    chosen = _balanced_index(retain.labels.numpy(), 100, seed=0)
    counts = np.bincount(retain.labels.numpy()[chosen], minlength=NUM_CLASSES)
    expected = np.bincount(retain.labels.numpy(), minlength=NUM_CLASSES) * 100 / 900
    assert np.all(np.abs(counts - expected) <= 1)  # class proportions kept
    assert len(np.unique(chosen)) == 100


def test_legacy_mia_svc_is_the_same_attack_as_fractions():
    retain = with_confidence(uniform(300, 0.5, 0.999, 1), seed=1)
    test = with_confidence(uniform(200, 0.2, 0.9, 2), seed=2)
    forget = with_confidence(uniform(80, 0.3, 0.99, 3), seed=3)
    legacy = fl.legacy_mia_svc(retain, forget, test)
    ours = fl.mia_efficacy(retain, forget, test, seed=42, max_samples=None)
    assert legacy["MIA Efficiency"] == legacy["MIA Test Acc"] == pytest.approx(ours.efficacy / 100)
    assert legacy["MIA Train Acc"] == pytest.approx(ours.attack_accuracy / 100)
    on_logits = fl.legacy_mia_svc(retain, forget, test, prob_only=False)
    assert 0.0 <= on_logits["MIA Efficiency"] <= 1.0


def test_loss_mia_identical_distributions_give_half():
    conf = uniform(2000, 0.05, 0.99, 8)
    forget, test = with_confidence(conf[:1000], seed=1), with_confidence(conf[1000:], seed=2)
    result = fl.loss_mia(forget, test)
    assert result.samples_per_side == 1000
    assert result.auc == pytest.approx(0.5, abs=0.05)
    assert result.accuracy == pytest.approx(0.5, abs=0.05)


def test_loss_mia_separable_losses_give_one():
    forget = with_confidence(uniform(200, 0.95, 0.999, 1), seed=1)  # low loss: remembered
    test = with_confidence(uniform(300, 0.1, 0.5, 2), seed=2)
    result = fl.loss_mia(forget, test)
    assert result.samples_per_side == 200
    assert result.auc == 1.0 and result.accuracy == 1.0


def test_attacks_raise_instead_of_returning_nothing():
    small = with_confidence(uniform(5, 0.2, 0.9, 1))
    with pytest.raises(ValueError, match="at least 10"):
        fl.loss_mia(small, small)
    with pytest.raises(ValueError, match="max_samples"):
        fl.mia_efficacy(small, small, small, max_samples=0)
    with pytest.raises(ValueError, match="n_splits"):
        fl.loss_mia(small, small, n_splits=0)
    assert math.isfinite(fl.mia_efficacy(small, small, small).efficacy)
