"""Evaluation against retraining: metrics, membership inference, the retrain cache, reports, plots.

* ``predictions``: collect a model's eval-mode logits once per evaluation set (:class:`Predictions`).
* ``metrics``: retain / forget / test accuracies (RA, FA, TA, UA, TFA).
* ``mia``: MIA-efficacy (SVC on confidence) and the loss-based population MIA.
* ``epsilon``: the NeurIPS 2023 unlearning challenge's per-example epsilon score.
* ``divergence``: JS divergence and agreement with the retrained model; ZRF.
* ``gap``: Avg. Gap, the mean absolute difference to the retrained model.
* ``evaluate``: :func:`evaluate_unlearning`, every metric of one model as one record.
* ``retrain``: the retrain reference, cached on disk by dataset, scenario, seed and recipe.
* ``report`` / ``plots``: tables (console, Markdown, CSV, JSON) and PNG plots.
"""

from funlearn.evaluation.divergence import (
    js_divergence,
    mean_js_divergence,
    prediction_agreement,
    zrf_cosine_legacy,
    zrf_score,
)
from funlearn.evaluation.epsilon import (
    ChallengeScore,
    challenge_score,
    epsilon_points,
    forget_score,
    logit_scaled_confidence,
    per_example_epsilon,
)
from funlearn.evaluation.evaluate import (
    METRICS,
    EvaluationConfig,
    MetricInfo,
    RetrainBaseline,
    UnlearningEvaluation,
    evaluate_unlearning,
    retrain_baseline,
)
from funlearn.evaluation.gap import GAP_METRICS, avg_gap, metric_gaps
from funlearn.evaluation.metrics import accuracy_percent, split_accuracies
from funlearn.evaluation.mia import (
    LossMia,
    MiaEfficacy,
    legacy_mia_svc,
    loss_mia,
    mia_efficacy,
    true_class_confidence,
)
from funlearn.evaluation.plots import DEFAULT_CURVES, plot_curves, plot_tradeoff
from funlearn.evaluation.predictions import (
    ModelPredictions,
    Predictions,
    collect_predictions,
    predict_split,
)
from funlearn.evaluation.report import DEFAULT_COLUMNS, Report, make_report
from funlearn.evaluation.retrain import REQUIRED_KEY_FIELDS, RetrainedModel, retrain_key, retrained_reference

__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_CURVES",
    "GAP_METRICS",
    "METRICS",
    "REQUIRED_KEY_FIELDS",
    "ChallengeScore",
    "EvaluationConfig",
    "LossMia",
    "MetricInfo",
    "MiaEfficacy",
    "ModelPredictions",
    "Predictions",
    "Report",
    "RetrainBaseline",
    "RetrainedModel",
    "UnlearningEvaluation",
    "accuracy_percent",
    "avg_gap",
    "challenge_score",
    "collect_predictions",
    "epsilon_points",
    "evaluate_unlearning",
    "forget_score",
    "js_divergence",
    "legacy_mia_svc",
    "logit_scaled_confidence",
    "loss_mia",
    "make_report",
    "mean_js_divergence",
    "metric_gaps",
    "mia_efficacy",
    "per_example_epsilon",
    "plot_curves",
    "plot_tradeoff",
    "predict_split",
    "prediction_agreement",
    "retrain_baseline",
    "retrain_key",
    "retrained_reference",
    "split_accuracies",
    "true_class_confidence",
    "zrf_cosine_legacy",
    "zrf_score",
]
