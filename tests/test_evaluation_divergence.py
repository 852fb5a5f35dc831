"""JS divergence, prediction agreement and ZRF against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon

import funlearn as fl


def _preds(seed: int, n: int = 40, c: int = 5, scale: float = 3.0) -> fl.Predictions:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(0))  # shared labels: aligned
    return fl.Predictions(torch.randn(n, c, generator=g) * scale, labels)


def test_js_divergence_matches_scipy_in_bits():
    a, b = _preds(1), _preds(2)
    p, q = torch.softmax(a.logits.double(), 1).numpy(), torch.softmax(b.logits.double(), 1).numpy()
    expected = jensenshannon(p, q, axis=1, base=2) ** 2  # scipy returns the JS *distance* (square root)
    np.testing.assert_allclose(fl.js_divergence(a.logits, b.logits).numpy(), expected, rtol=1e-6, atol=1e-12)
    assert fl.mean_js_divergence(a, b) == pytest.approx(expected.mean(), rel=1e-6)
    assert fl.mean_js_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    # disjoint one-hot predictions are 1 bit apart
    onehot = torch.tensor([[50.0, -50.0], [-50.0, 50.0]])
    assert fl.js_divergence(onehot, onehot.flip(1)).tolist() == pytest.approx([1.0, 1.0])


def test_prediction_agreement_counts_equal_argmax():
    a, b = _preds(1), _preds(2)
    expected = 100.0 * (a.logits.argmax(1) == b.logits.argmax(1)).double().mean().item()
    assert fl.prediction_agreement(a, b) == pytest.approx(expected)
    assert fl.prediction_agreement(a, a) == 100.0


def test_zrf_is_one_minus_mean_js_to_the_random_model():
    model, random_model = _preds(3), _preds(4, scale=0.1)
    p = torch.softmax(model.logits.double(), 1).numpy()
    r = torch.softmax(random_model.logits.double(), 1).numpy()
    assert fl.zrf_score(model, random_model) == pytest.approx(
        1 - (jensenshannon(p, r, axis=1, base=2) ** 2).mean()
    )
    assert fl.zrf_score(random_model, random_model) == pytest.approx(1.0)


def test_zrf_cosine_legacy_averages_batches_unweighted():
    model, random_model = _preds(5, n=23), _preds(6, n=23)
    batch_means = [
        F.cosine_similarity(model.logits[i : i + 10], random_model.logits[i : i + 10], dim=1).mean().item()
        for i in range(0, 23, 10)
    ]  # batches of 10, 10 and 3, each weighted equally (torchunlearn's loop)
    expected = float(np.mean([(s + 1) / 2 for s in batch_means]))
    assert fl.zrf_cosine_legacy(model, random_model, batch_size=10) == pytest.approx(expected, rel=1e-6)


def test_comparisons_refuse_predictions_that_are_not_row_aligned():
    a = _preds(1)
    shuffled = fl.Predictions(a.logits.flip(0), a.labels.flip(0))
    with pytest.raises(ValueError, match="row-aligned"):
        fl.mean_js_divergence(a, shuffled)
    with pytest.raises(ValueError, match="same samples"):
        fl.prediction_agreement(a, _preds(1, n=10))
