"""Avg. Gap: the mean absolute difference to the retrained model, the headline number.

As in the SalUn (Fan et al. 2024) and l1-sparse (Jia et al. 2023) papers, over four metrics in
percentage points: forget accuracy (equivalently UA = 100 - FA: ``|ΔUA| = |ΔFA|``), retain accuracy,
test accuracy and MIA-efficacy::

    Avg. Gap = (|FA - FA_r| + |RA - RA_r| + |TA - TA_r| + |MIA - MIA_r|) / 4

Lower is better; the retrained model scores 0. Unlike torchunlearn's "UG" (only the retain-accuracy
gap) and its README's ΔAcc (a sum over three accuracies against a mistaken oracle), the reference is
always a model retrained from scratch on the retain set with the original recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["GAP_METRICS", "avg_gap", "metric_gaps"]

GAP_METRICS: tuple[str, ...] = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")


def metric_gaps(
    metrics: Mapping[str, float | None],
    reference: Mapping[str, float | None],
    keys: Sequence[str] = GAP_METRICS,
) -> dict[str, float]:
    """``{key: |metrics[key] - reference[key]|}`` for every key (each must be a number on both sides)."""
    if not keys:
        raise ValueError("keys must name at least one metric")
    missing = [k for k in keys if metrics.get(k) is None or reference.get(k) is None]
    if missing:
        raise ValueError(
            f"gap metrics {missing} are missing from the evaluation or its reference; evaluate both "
            "with the same settings (e.g. MIA enabled)"
        )
    return {k: abs(float(metrics[k]) - float(reference[k])) for k in keys}  # type: ignore[arg-type]


def avg_gap(
    metrics: Mapping[str, float | None],
    reference: Mapping[str, float | None],
    keys: Sequence[str] = GAP_METRICS,
) -> float:
    """Mean of :func:`metric_gaps`: by default the SalUn Avg. Gap over FA (= UA), RA, TA, MIA-efficacy."""
    gaps = metric_gaps(metrics, reference, keys)
    return sum(gaps.values()) / len(gaps)
