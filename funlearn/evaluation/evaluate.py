"""One model against the retrained reference: every metric, as one record of plain numbers.

Usage::

    baseline = retrain_baseline(retrained_predictions, time_s=retrain_seconds)
    result = evaluate_unlearning(method_predictions, baseline=baseline, time_s=method_seconds)
    result.avg_gap   # the headline number: lower is better, 0 for the retrained model

:data:`METRICS` names every field of :class:`UnlearningEvaluation` with its label, unit and
target (``"higher"``, ``"lower"``, or ``"retrain"``: the closer to the retrained model's value, the
better). Note that after *random* forgetting the retrained model still classifies most forget samples
correctly (FA about its test accuracy); only class-wise forgetting drives FA to about 0. And
MIA-efficacy is not "higher is better" (nor "lower", as torchunlearn labels it): its target is the
retrained model's value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, NamedTuple

from funlearn.evaluation.divergence import mean_js_divergence, prediction_agreement, zrf_score
from funlearn.evaluation.gap import GAP_METRICS, avg_gap, metric_gaps
from funlearn.evaluation.metrics import split_accuracies
from funlearn.evaluation.mia import loss_mia, mia_efficacy
from funlearn.evaluation.predictions import ModelPredictions, Predictions

__all__ = [
    "METRICS",
    "EvaluationConfig",
    "MetricInfo",
    "RetrainBaseline",
    "UnlearningEvaluation",
    "evaluate_unlearning",
    "retrain_baseline",
]

Target = Literal["higher", "lower", "retrain"]


class MetricInfo(NamedTuple):
    """How to read a metric: a short ``label``, its ``unit`` ("%", "bits", "[0,1]", "s", "x"),
    its ``target`` ("higher", "lower", or "retrain": closest to the retrained model) and a description."""

    label: str
    unit: str
    target: Target
    description: str


METRICS: dict[str, MetricInfo] = {
    "retain_acc": MetricInfo("RA", "%", "higher", "accuracy on the retain set"),
    "forget_acc": MetricInfo("FA", "%", "retrain", "accuracy on the forget set"),
    "unlearn_acc": MetricInfo("UA", "%", "retrain", "100 - FA"),
    "test_acc": MetricInfo("TA", "%", "higher", "accuracy on the test set (class-wise: the kept classes)"),
    "test_forget_acc": MetricInfo(
        "TFA", "%", "retrain", "accuracy on the test samples of the forgotten classes"
    ),
    "mia_efficacy": MetricInfo(
        "MIA", "%", "retrain", "MIA-efficacy: % of forget samples an SVC on confidence calls non-member"
    ),
    "mia_loss_auc": MetricInfo(
        "LossMIA-AUC", "[0,1]", "retrain", "ROC-AUC of a loss attack, forget vs test (0.5: no signal)"
    ),
    "mia_loss_acc": MetricInfo(
        "LossMIA-Acc", "[0,1]", "retrain", "cross-validated accuracy of the loss attack"
    ),
    "zrf": MetricInfo("ZRF", "[0,1]", "retrain", "1 - mean JS to a random model on the forget set"),
    "js_forget": MetricInfo(
        "JS(F)", "bits", "lower", "mean JS divergence to the retrained model, forget set"
    ),
    "js_test": MetricInfo("JS(T)", "bits", "lower", "mean JS divergence to the retrained model, test set"),
    "agreement_forget": MetricInfo(
        "Agree(F)", "%", "higher", "% same predicted class as the retrained model, forget set"
    ),
    "agreement_test": MetricInfo(
        "Agree(T)", "%", "higher", "% same predicted class as the retrained model, test set"
    ),
    "gap_forget": MetricInfo("GapFA", "%", "lower", "|FA - FA(retrain)| (= |UA - UA(retrain)|)"),
    "gap_retain": MetricInfo("GapRA", "%", "lower", "|RA - RA(retrain)|"),
    "gap_test": MetricInfo("GapTA", "%", "lower", "|TA - TA(retrain)|"),
    "gap_mia": MetricInfo("GapMIA", "%", "lower", "|MIA - MIA(retrain)|"),
    "avg_gap": MetricInfo("AvgGap", "%", "lower", "mean of the four gaps (SalUn's Avg. Gap)"),
    "time_s": MetricInfo("Time(s)", "s", "lower", "run time in seconds"),
    "time_fraction": MetricInfo("Time/RT", "x", "lower", "run time as a fraction of retraining time"),
}

_GAP_FIELDS = dict(zip(GAP_METRICS, ("gap_forget", "gap_retain", "gap_test", "gap_mia"), strict=True))


@dataclass(frozen=True)
class EvaluationConfig:
    """Attack settings, shared by the retrained baseline and every evaluation compared with it.

    ``mia``: compute MIA-efficacy on at most ``mia_max_samples`` retain and test samples (needed for
    the Avg. Gap). ``loss_mia``: the loss attack with ``loss_mia_splits`` cross-validation splits
    (needs at least 10 forget samples). ``seed`` fixes every subsample and attack.
    """

    seed: int = 0
    mia: bool = True
    mia_max_samples: int | None = 5000
    loss_mia: bool = True
    loss_mia_splits: int = 10

    def __post_init__(self) -> None:
        def positive(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int (got {self.seed!r})")
        if self.mia_max_samples is not None and not positive(self.mia_max_samples):
            raise ValueError(f"mia_max_samples must be a positive int or None (got {self.mia_max_samples!r})")
        if not positive(self.loss_mia_splits):
            raise ValueError(f"loss_mia_splits must be a positive int (got {self.loss_mia_splits!r})")


@dataclass(frozen=True)
class UnlearningEvaluation:
    """Every metric of one model, as plain numbers (None: not computed). See :data:`METRICS`.

    Accuracies and gaps are in percent. Fields that compare with the retrained model (``js_*``,
    ``agreement_*``, ``gap_*``, ``avg_gap``, ``time_fraction``) need a :class:`RetrainBaseline`.
    """

    retain_acc: float
    forget_acc: float
    unlearn_acc: float
    test_acc: float
    test_forget_acc: float | None = None
    mia_efficacy: float | None = None
    mia_loss_auc: float | None = None
    mia_loss_acc: float | None = None
    zrf: float | None = None
    js_forget: float | None = None
    js_test: float | None = None
    agreement_forget: float | None = None
    agreement_test: float | None = None
    gap_forget: float | None = None
    gap_retain: float | None = None
    gap_test: float | None = None
    gap_mia: float | None = None
    avg_gap: float | None = None
    time_s: float | None = None
    time_fraction: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        """``{field: value}`` in :data:`METRICS` order (None for metrics not computed)."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class RetrainBaseline:
    """The retrained model's predictions and evaluation, and the settings every comparison reuses."""

    predictions: ModelPredictions
    evaluation: UnlearningEvaluation
    random_forget: Predictions | None
    config: EvaluationConfig


def _check_time(time_s: float | None) -> None:
    if time_s is not None and (
        isinstance(time_s, bool) or not isinstance(time_s, (int, float)) or time_s < 0
    ):
        raise ValueError(f"time_s must be a non-negative number of seconds or None (got {time_s!r})")


def _own_metrics(
    predictions: ModelPredictions,
    random_forget: Predictions | None,
    time_s: float | None,
    cfg: EvaluationConfig,
) -> dict[str, Any]:
    """The metrics that need only this model's predictions."""
    out: dict[str, Any] = dict(
        split_accuracies(predictions), time_s=None if time_s is None else float(time_s)
    )
    if cfg.mia:
        out["mia_efficacy"] = mia_efficacy(
            predictions.retain,
            predictions.forget,
            predictions.test,
            seed=cfg.seed,
            max_samples=cfg.mia_max_samples,
        ).efficacy
    if cfg.loss_mia:
        attack = loss_mia(predictions.forget, predictions.test, n_splits=cfg.loss_mia_splits, seed=cfg.seed)
        out["mia_loss_auc"], out["mia_loss_acc"] = attack.auc, attack.accuracy
    if random_forget is not None:
        out["zrf"] = zrf_score(predictions.forget, random_forget)
    return out


def _comparison(
    own: dict[str, Any], predictions: ModelPredictions, baseline: RetrainBaseline
) -> dict[str, Any]:
    """The metrics relative to the retrained model."""
    ref = baseline.predictions
    out: dict[str, Any] = {
        "js_forget": mean_js_divergence(predictions.forget, ref.forget),
        "js_test": mean_js_divergence(predictions.test, ref.test),
        "agreement_forget": prediction_agreement(predictions.forget, ref.forget),
        "agreement_test": prediction_agreement(predictions.test, ref.test),
    }
    reference = baseline.evaluation.as_dict()
    available = [k for k in GAP_METRICS if own.get(k) is not None and reference[k] is not None]
    out.update({_GAP_FIELDS[k]: gap for k, gap in metric_gaps(own, reference, available).items()})
    if len(available) == len(GAP_METRICS):
        out["avg_gap"] = avg_gap(own, reference)
    ref_time = reference["time_s"]
    if own["time_s"] is not None and ref_time:
        out["time_fraction"] = own["time_s"] / ref_time
    return out


def retrain_baseline(
    predictions: ModelPredictions,
    *,
    time_s: float | None = None,
    random_forget: Predictions | None = None,
    config: EvaluationConfig | None = None,
) -> RetrainBaseline:
    """Evaluate the retrained model once, as the reference of every later :func:`evaluate_unlearning`.

    ``time_s``: its training time (for the methods' ``time_fraction``). ``random_forget``: a randomly
    initialised model's predictions on the forget set (:func:`~funlearn.random_init`), which
    enables ZRF for the baseline and every method. Its own gaps are 0 and agreements 100.
    """
    _check_time(time_s)
    cfg = config or EvaluationConfig()
    own = _own_metrics(predictions, random_forget, time_s, cfg)
    provisional = RetrainBaseline(predictions, UnlearningEvaluation(**own), random_forget, cfg)
    evaluation = UnlearningEvaluation(**own, **_comparison(own, predictions, provisional))
    return replace(provisional, evaluation=evaluation)


def evaluate_unlearning(
    predictions: ModelPredictions,
    *,
    baseline: RetrainBaseline | None = None,
    time_s: float | None = None,
    random_forget: Predictions | None = None,
    config: EvaluationConfig | None = None,
) -> UnlearningEvaluation:
    """Every metric of one model from its predictions; with ``baseline``, also its distance to retraining.

    ``random_forget`` defaults to the baseline's, ``config`` to the baseline's (an explicit config
    must equal it, so that gaps compare the same attacks). Nothing is retrained or recomputed for
    the baseline.
    """
    _check_time(time_s)
    if baseline is not None and config is not None and config != baseline.config:
        raise ValueError(
            f"config {config} differs from the baseline's {baseline.config}; gaps need the same settings"
        )
    cfg = config or (baseline.config if baseline is not None else EvaluationConfig())
    if random_forget is None and baseline is not None:
        random_forget = baseline.random_forget
    own = _own_metrics(predictions, random_forget, time_s, cfg)
    if baseline is None:
        return UnlearningEvaluation(**own)
    return UnlearningEvaluation(**own, **_comparison(own, predictions, baseline))
