"""Population membership-inference attacks (MIA) against an unlearned model.

**MIA-efficacy** (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning"; SalUn, Fan et
al. 2024): an RBF SVC (``C=3, gamma="auto"``) learns to tell members from non-members by one
feature, the softmax probability of the true class ("confidence"). It is trained on retain samples
(label 1, member) against test samples (label 0, non-member), balanced to the same size by a seeded
subsample stratified on the class labels, and then applied to the forget set. The value is the
percentage of forget samples predicted *non-member*. Higher means the forget set looks more like
unseen data, but higher is **not** better: the target is the retrained model's value (a retrained
model has seen none of the forget set and still calls some of it "member"). torchunlearn labels it
"low is good", which is the wrong direction.

**Loss MIA** (NeurIPS 2023 unlearning challenge starting kit): a logistic regression on per-sample
cross-entropy losses, forget samples (member) against test samples (non-member), balanced by a seeded
subsample, scored by stratified-shuffle-split cross-validation. Reported as ROC-AUC and accuracy in
[0, 1]; 0.5 means no information. After random forgetting a retrained model scores about 0.5; judge a
method by its distance to the retrained model's value.

Errors are raised, never swallowed (torchunlearn silently dropped the MIA key on any exception).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_validate
from sklearn.svm import SVC
from torch import Tensor

from funlearn.evaluation.predictions import Predictions
from funlearn.losses import cross_entropy
from funlearn.random import key

__all__ = [
    "LossMia",
    "MiaEfficacy",
    "legacy_mia_svc",
    "loss_mia",
    "mia_efficacy",
    "true_class_confidence",
]

_BALANCE_STREAM = 0xB41  # folded into the seed of an unstratified balancing subsample
_MIN_LOSS_MIA_SAMPLES = 10  # per side, so every cross-validation fold holds both classes


@dataclass(frozen=True)
class MiaEfficacy:
    """``efficacy``: % of forget samples the attack predicts non-member (target: the retrained
    model's value). ``attack_accuracy``: % accuracy of the attack on its own balanced retain/test
    training set (50 means it found no signal). ``samples_per_side``: retain (= test) samples it saw."""

    efficacy: float
    attack_accuracy: float
    samples_per_side: int


@dataclass(frozen=True)
class LossMia:
    """Cross-validated loss attack, forget vs test: mean ``auc`` and ``accuracy`` in [0, 1] (0.5: no
    information), over ``samples_per_side`` forget (= test) samples."""

    auc: float
    accuracy: float
    samples_per_side: int


def true_class_confidence(predictions: Predictions) -> Tensor:
    """``softmax(logits)[i, labels[i]]`` for every row, shape ``(N,)``."""
    log_p = torch.log_softmax(predictions.logits.double(), dim=1)
    return log_p.gather(1, predictions.labels[:, None]).squeeze(1).exp()


def _balanced_index(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Row indices of a seeded subsample of ``size`` rows, stratified on ``labels`` when possible.

    Stratification uses scikit-learn's ``StratifiedShuffleSplit(random_state=seed)`` (as
    torchunlearn does); it needs every class twice and ``size`` at least the number of classes on
    both sides of the split, otherwise the subsample is uniform (from ``key(seed)``).
    """
    n = labels.shape[0]
    if size >= n:
        return np.arange(n)
    counts = np.unique(labels, return_counts=True)[1]
    if counts.min() >= 2 and min(size, n - size) >= counts.size:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        _, chosen = next(splitter.split(np.zeros(n), labels))
        return np.sort(chosen)
    order = torch.randperm(n, generator=key(seed, _BALANCE_STREAM))[:size]
    return order.sort().values.numpy()


def _features(predictions: Predictions, prob_only: bool) -> np.ndarray:
    if prob_only:
        return true_class_confidence(predictions).numpy()[:, None]
    return predictions.logits.double().numpy()


def _svc_attack(
    retain: Predictions, forget: Predictions, test: Predictions, size: int, seed: int, prob_only: bool
) -> tuple[float, float]:
    """Fit the SVC on ``size`` retain (member) and ``size`` test (non-member) samples; return its
    training accuracy and the fraction of forget samples it predicts non-member (both in [0, 1])."""
    if not prob_only and not retain.num_classes == test.num_classes == forget.num_classes:
        raise ValueError("MIA on logits needs the same number of classes in retain, forget and test")
    members = _features(retain, prob_only)[_balanced_index(retain.labels.numpy(), size, seed)]
    nonmembers = _features(test, prob_only)[_balanced_index(test.labels.numpy(), size, seed)]
    x = np.concatenate([members, nonmembers])
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = SVC(C=3, gamma="auto", kernel="rbf", random_state=seed).fit(x, y)
    forget_nonmember = attack.predict(_features(forget, prob_only)) == 0
    return float(attack.score(x, y)), float(forget_nonmember.mean())


def mia_efficacy(
    retain: Predictions,
    forget: Predictions,
    test: Predictions,
    *,
    seed: int = 0,
    max_samples: int | None = 5000,
) -> MiaEfficacy:
    """MIA-efficacy (confidence feature), in percent; see the module docstring.

    The attack trains on ``min(|retain|, |test|, max_samples)`` samples per side (the SVC's cost grows
    quadratically: 5000 per side take about 3 s on one CPU core); ``max_samples=None`` uses all.
    """
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int or None (got {max_samples!r})")
    size = min(len(retain), len(test), max_samples or len(retain))
    accuracy, efficacy = _svc_attack(retain, forget, test, size, seed, prob_only=True)
    return MiaEfficacy(efficacy=100.0 * efficacy, attack_accuracy=100.0 * accuracy, samples_per_side=size)


def legacy_mia_svc(
    retain: Predictions,
    forget: Predictions,
    test: Predictions,
    *,
    prob_only: bool = True,
    seed: int = 42,
) -> dict[str, float]:
    """torchunlearn's ``MIA_SVC`` for parity: the same attack with its outputs, as fractions.

    Balances to ``min(|retain|, |test|)`` (only the larger side is subsampled), features are the true-
    class probability (``prob_only=True``) or the raw logit vector. Returns ``{"MIA Train Acc",
    "MIA Test Acc", "MIA Efficiency"}``; the last two are both the fraction of forget samples
    predicted non-member (higher is *not* better; see the module docstring).
    """
    accuracy, efficacy = _svc_attack(retain, forget, test, min(len(retain), len(test)), seed, prob_only)
    return {"MIA Train Acc": accuracy, "MIA Test Acc": efficacy, "MIA Efficiency": efficacy}


def loss_mia(forget: Predictions, test: Predictions, *, n_splits: int = 10, seed: int = 0) -> LossMia:
    """Loss-based population MIA, forget (member) vs test (non-member); see the module docstring.

    Both sides are subsampled (seeded) to ``min(|forget|, |test|)`` samples, which must be at least
    10; the attack is cross-validated over ``n_splits`` stratified 90/10 splits.
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive int (got {n_splits!r})")
    size = min(len(forget), len(test))
    if size < _MIN_LOSS_MIA_SAMPLES:
        raise ValueError(
            f"loss MIA needs at least {_MIN_LOSS_MIA_SAMPLES} forget and test samples (got "
            f"{len(forget)} and {len(test)}); skip it for tiny forget sets (EvaluationConfig(loss_mia=False))"
        )
    pieces = []
    for i, p in enumerate((forget, test)):
        losses = cross_entropy(p.logits.double(), p.labels, reduction="none")
        chosen = torch.randperm(len(p), generator=key(seed, _BALANCE_STREAM, i))[:size]
        pieces.append(losses[chosen].numpy())
    x = np.concatenate(pieces)[:, None]
    y = np.concatenate([np.ones(size), np.zeros(size)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.1, random_state=seed)
    scores = cross_validate(
        LogisticRegression(random_state=seed),
        x,
        y,
        cv=cv,
        scoring=("roc_auc", "accuracy"),
        error_score="raise",
    )
    return LossMia(
        auc=float(scores["test_roc_auc"].mean()),
        accuracy=float(scores["test_accuracy"].mean()),
        samples_per_side=size,
    )
