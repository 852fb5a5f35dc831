"""PNG plots: per-epoch accuracy curves per method, and the forget/utility trade-off against retraining.

matplotlib is an optional dependency (``pip install funlearn[plot]``), imported only when a plot is
drawn. Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot, no global backend
state) and written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from funlearn.engine.plot import new_figure, save_png
from funlearn.engine.records import History
from funlearn.evaluation.evaluate import UnlearningEvaluation
from funlearn.evaluation.report import Report, _label

__all__ = ["DEFAULT_CURVES", "plot_curves", "plot_tradeoff"]

DEFAULT_CURVES: dict[str, str] = {"RA": "acc/retain", "FA": "acc/forget", "TA": "acc/test"}

Records = Sequence[Mapping[str, Any]]


def plot_curves(
    histories: Mapping[str, History | Records],
    path: str | os.PathLike,
    *,
    metrics: Mapping[str, str] = DEFAULT_CURVES,
    x: str = "epoch",
    reference: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """One panel per metric (``{panel title: record key}``), one line per method, saved as PNG.

    ``histories`` maps a method name to its history: an engine :class:`~funlearn.History` (its
    evaluation records ``.evals`` are plotted) or a list of record dicts. Records that lack a
    panel's key (e.g. per-step loss records) are skipped for that panel; the x value comes from key
    ``x``. ``reference`` draws a dashed horizontal line per panel (e.g. the retrained model's
    RA/FA/TA, in the same units as the records), keyed by panel title.
    """
    if not histories:
        raise ValueError("histories is empty: give {method name: History or list of record dicts}")
    histories = {name: h.evals if isinstance(h, History) else h for name, h in histories.items()}
    if not metrics:
        raise ValueError("metrics is empty: give {panel title: record key}")
    seen = {k for history in histories.values() for record in history for k in record}
    missing = [key for key in metrics.values() if key not in seen]
    if missing:
        raise ValueError(f"no record holds {missing}; record keys are {sorted(seen)} (set metrics=...)")
    unknown = sorted(set(reference or {}) - set(metrics))
    if unknown:
        raise ValueError(f"reference keys {unknown} are not panel titles {list(metrics)}")
    for name, history in histories.items():
        bad = [i for i, r in enumerate(history) if x not in r and any(k in r for k in metrics.values())]
        if bad:
            raise ValueError(f"{name}: records {bad[:5]} hold metrics but no {x!r} (set x=...)")

    fig = new_figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (panel, key) in zip(axes, metrics.items(), strict=True):
        for name, history in histories.items():
            points = [(float(r[x]), float(r[key])) for r in history if r.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
        if reference and panel in reference:
            ax.axhline(float(reference[panel]), color="black", linestyle="--", linewidth=1, label="retrain")
        ax.set_title(panel)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save_png(fig, path, dpi=120)


def _rows(
    results: Report | Mapping[str, UnlearningEvaluation | Mapping[str, Any]],
) -> dict[str, Mapping[str, Any]]:
    if isinstance(results, Report):
        return {r["method"]: r for r in results.rows}
    return {k: v.as_dict() if isinstance(v, UnlearningEvaluation) else v for k, v in results.items()}


def plot_tradeoff(
    results: Report | Mapping[str, UnlearningEvaluation | Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    x: str = "gap_forget",
    y: Sequence[str] = ("gap_retain", "gap_test"),
    retrained: str = "retrain",
    title: str = "",
) -> Path:
    """Scatter of each method's forget gap (``x``) against its utility gap (mean of the ``y`` keys),
    with the retrained model marked at the origin (its gaps to itself are 0); saved as PNG.

    ``results`` is a :class:`Report` or ``{name: evaluation}`` evaluated against a retrain baseline.
    The row named ``retrained`` is drawn as the reference star.
    """
    if isinstance(y, str) or not y:
        raise ValueError(f"y must be a non-empty sequence of metric keys (got {y!r})")
    rows = {k: v for k, v in _rows(results).items() if k != retrained}
    if not rows:
        raise ValueError("results hold no method to plot besides the retrained reference")
    keys = [x, *y]
    lacking = sorted(name for name, r in rows.items() if any(r.get(k) is None for k in keys))
    if lacking:
        raise ValueError(f"{lacking} lack {keys}: evaluate them with baseline=retrain_baseline(...)")

    fig = new_figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for name, r in rows.items():
        px, py = float(r[x]), sum(float(r[k]) for k in y) / len(y)
        ax.scatter([px], [py], s=36)
        ax.annotate(name, (px, py), textcoords="offset points", xytext=(5, 4), fontsize="small")
    ax.scatter([0.0], [0.0], marker="*", s=220, color="black", zorder=3, label=retrained)
    ax.set_xlabel(f"forget gap ({_label(x)}, points)")
    ax.set_ylabel(
        f"utility gap ({_label(y[0]) if len(y) == 1 else 'mean of ' + ', '.join(map(_label, y))}, points)"
    )
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    if title:
        ax.set_title(title)
    return save_png(fig, path, dpi=120)
