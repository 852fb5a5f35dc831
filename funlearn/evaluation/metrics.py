"""Accuracies of one model on the sets of a forgetting split, in percent.

* RA, retain accuracy: on the retain (training) set. Higher is better, up to the retrained model's.
* FA, forget accuracy: on the forget set. The target is the retrained model's value: after *random*
  forgetting a retrained model still classifies most forget samples correctly (about its test
  accuracy); only after *class-wise* forgetting is its FA near 0.
* UA, unlearning accuracy = 100 - FA (the SalUn / l1-sparse papers' convention).
* TA, test accuracy (class-wise forgetting: on the test samples of the kept classes).
* TFA, test-forget accuracy (class-wise forgetting only): on the test samples of the forgotten classes.
"""

from __future__ import annotations

from funlearn.evaluation.predictions import ModelPredictions, Predictions

__all__ = ["accuracy_percent", "split_accuracies"]


def accuracy_percent(predictions: Predictions) -> float:
    """Top-1 accuracy in percent: ``100 * mean(argmax_c logits[i, c] == labels[i])``."""
    correct = predictions.logits.argmax(dim=1) == predictions.labels
    return 100.0 * float(correct.double().mean())


def split_accuracies(predictions: ModelPredictions) -> dict[str, float]:
    """``{"retain_acc", "forget_acc", "unlearn_acc", "test_acc"}`` (+ ``"test_forget_acc"``) in percent."""
    forget = accuracy_percent(predictions.forget)
    out = {
        "retain_acc": accuracy_percent(predictions.retain),
        "forget_acc": forget,
        "unlearn_acc": 100.0 - forget,
        "test_acc": accuracy_percent(predictions.test),
    }
    if predictions.test_forget is not None:
        out["test_forget_acc"] = accuracy_percent(predictions.test_forget)
    return out
