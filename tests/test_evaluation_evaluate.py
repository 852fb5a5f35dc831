"""Avg. Gap and the evaluation record: every field equals its direct computation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import funlearn as fl


def test_avg_gap_reproduces_the_salun_table():
    # SalUn (Fan et al. 2024) Table 1, CIFAR-10 random 10%: SalUn against Retrain, Avg. Gap 1.15
    retrain = {"forget_acc": 94.76, "retain_acc": 100.00, "test_acc": 94.26, "mia_efficacy": 12.88}
    salun = {"forget_acc": 97.15, "retain_acc": 99.62, "test_acc": 93.93, "mia_efficacy": 14.39}
    gaps = fl.metric_gaps(salun, retrain)
    assert gaps == pytest.approx(
        {"forget_acc": 2.39, "retain_acc": 0.38, "test_acc": 0.33, "mia_efficacy": 1.51}
    )
    assert fl.avg_gap(salun, retrain) == pytest.approx((2.39 + 0.38 + 0.33 + 1.51) / 4)
    assert round(fl.avg_gap(salun, retrain), 2) == 1.15
    # UA = 100 - FA gives the same gap
    ua = {k: 100 - v if k == "forget_acc" else v for k, v in salun.items()}
    ua_r = {k: 100 - v if k == "forget_acc" else v for k, v in retrain.items()}
    assert fl.avg_gap(ua, ua_r) == pytest.approx(fl.avg_gap(salun, retrain))
    with pytest.raises(ValueError, match="mia_efficacy"):
        fl.avg_gap({**salun, "mia_efficacy": None}, retrain)


def _predictions(seed: int, n: int, shift: float, num_classes: int = 4) -> fl.Predictions:
    """Labels 0..C-1 with logits favouring the label by ``shift`` plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    logits = torch.randn(n, num_classes, generator=g, dtype=torch.float64)
    logits[torch.arange(n), labels] += shift
    return fl.Predictions(logits, labels)


def _model(seed: int, forget_shift: float) -> fl.ModelPredictions:
    return fl.ModelPredictions(
        retain=_predictions(seed, 200, 4.0),
        forget=_predictions(seed + 1, 60, forget_shift),
        test=_predictions(seed + 2, 120, 1.5),
    )


def test_evaluation_fields_equal_their_direct_computations():
    retrained, method = _model(0, forget_shift=1.5), _model(10, forget_shift=3.0)
    cfg = fl.EvaluationConfig(seed=3, mia_max_samples=100)
    random_forget = _predictions(99, 60, 0.0)
    baseline = fl.retrain_baseline(retrained, time_s=20.0, random_forget=random_forget, config=cfg)
    result = fl.evaluate_unlearning(method, baseline=baseline, time_s=2.0)

    ref = baseline.evaluation
    assert ref.avg_gap == 0.0 and ref.gap_mia == 0.0 and ref.agreement_forget == 100.0
    assert ref.js_test == pytest.approx(0.0, abs=1e-12)
    assert ref.time_fraction == 1.0

    assert result.retain_acc == fl.accuracy_percent(method.retain)
    assert result.forget_acc == fl.accuracy_percent(method.forget)
    assert result.unlearn_acc == pytest.approx(100 - result.forget_acc)
    assert result.test_acc == fl.accuracy_percent(method.test)
    assert result.test_forget_acc is None
    mia = fl.mia_efficacy(method.retain, method.forget, method.test, seed=3, max_samples=100)
    assert result.mia_efficacy == mia.efficacy
    loss = fl.loss_mia(method.forget, method.test, seed=3)
    assert (result.mia_loss_auc, result.mia_loss_acc) == (loss.auc, loss.accuracy)
    assert result.zrf == fl.zrf_score(method.forget, random_forget)  # the baseline's random reference
    assert result.js_forget == fl.mean_js_divergence(method.forget, retrained.forget)
    assert result.js_test == fl.mean_js_divergence(method.test, retrained.test)
    assert result.agreement_forget == fl.prediction_agreement(method.forget, retrained.forget)
    assert result.agreement_test == fl.prediction_agreement(method.test, retrained.test)
    expected_gaps = [
        abs(result.forget_acc - ref.forget_acc),
        abs(result.retain_acc - ref.retain_acc),
        abs(result.test_acc - ref.test_acc),
        abs(result.mia_efficacy - ref.mia_efficacy),
    ]
    assert [result.gap_forget, result.gap_retain, result.gap_test, result.gap_mia] == pytest.approx(
        expected_gaps
    )
    assert result.avg_gap == pytest.approx(sum(expected_gaps) / 4)
    assert result.gap_forget > 0  # the two models really differ on the forget set
    assert result.time_s == 2.0 and result.time_fraction == pytest.approx(0.1)


def test_metrics_registry_describes_every_field_in_order():
    assert list(fl.METRICS) == [f.name for f in dataclasses.fields(fl.UnlearningEvaluation)]
    assert fl.METRICS["mia_efficacy"].target == "retrain"  # not "low is good" (torchunlearn's label)
    assert {info.target for info in fl.METRICS.values()} <= {"higher", "lower", "retrain"}


def test_without_baseline_or_mia_the_comparisons_are_absent():
    alone = fl.evaluate_unlearning(_model(0, 1.5), config=fl.EvaluationConfig(loss_mia=False))
    assert alone.avg_gap is None and alone.js_forget is None and alone.mia_loss_auc is None
    assert alone.mia_efficacy is not None and alone.zrf is None
    cfg = fl.EvaluationConfig(mia=False, loss_mia=False)
    baseline = fl.retrain_baseline(_model(0, 1.5), config=cfg)
    result = fl.evaluate_unlearning(_model(10, 3.0), baseline=baseline)
    assert result.mia_efficacy is None and result.gap_mia is None and result.avg_gap is None
    assert result.gap_forget is not None and result.time_fraction is None


def test_evaluation_refuses_mismatched_settings_and_predictions():
    with pytest.raises(ValueError, match="loss_mia_splits"):
        fl.EvaluationConfig(loss_mia_splits=0)
    with pytest.raises(ValueError, match="mia_max_samples"):
        fl.EvaluationConfig(mia_max_samples=0)
    baseline = fl.retrain_baseline(_model(0, 1.5), config=fl.EvaluationConfig(mia=False, loss_mia=False))
    with pytest.raises(ValueError, match="differs from the baseline"):
        fl.evaluate_unlearning(_model(10, 3.0), baseline=baseline, config=fl.EvaluationConfig())
    with pytest.raises(ValueError, match="time_s"):
        fl.evaluate_unlearning(_model(10, 3.0), baseline=baseline, time_s=-1.0)
    other = fl.ModelPredictions(
        retain=_predictions(0, 200, 4.0), forget=_predictions(1, 50, 1.0), test=_predictions(2, 120, 1.5)
    )
    with pytest.raises(ValueError, match="same samples"):
        fl.evaluate_unlearning(other, baseline=baseline)
