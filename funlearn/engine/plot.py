"""A PNG of a run's history: accuracies per evaluation, and the training loss per step.

Needs matplotlib (``pip install funlearn[plot]``); it draws on a bare ``Figure`` with the Agg
canvas, so no GUI backend and no global pyplot state are involved.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from funlearn.engine.records import History
from funlearn.io import atomic_write_bytes

__all__ = ["plot_history", "new_figure", "save_png"]


def require_matplotlib() -> None:
    """Raise a clear ImportError when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ImportError(f"plotting needs matplotlib: pip install funlearn[plot] (or pass plot=False) [{err}]") from err


def new_figure(**kwargs: Any) -> Any:
    """A bare matplotlib ``Figure`` on the Agg canvas (no pyplot, no GUI backend, no global state).

    matplotlib is imported here, lazily: it is an optional dependency (``pip install funlearn[plot]``).
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically; returns the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def plot_history(history: History, path: str | os.PathLike, *, keys: Sequence[str] | None = None) -> None:
    """Save a two-panel PNG at ``path``: ``keys`` (default every ``acc/*``) vs step, and the step losses."""
    if keys is None:
        keys = sorted({k for row in history.evals for k in row if k.startswith("acc/")})
    fig = new_figure(figsize=(10, 4), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for k in keys:
        rows = [r for r in history.evals if k in r]
        acc_ax.plot([r["step"] for r in rows], [r[k] for r in rows], marker="o", label=k)
    acc_ax.set(xlabel="step", ylabel="accuracy (%)" if all(k.startswith("acc/") for k in keys) else "value",
               title="evaluations")  # fmt: skip
    if keys:
        acc_ax.legend()
    rows = [r for r in history.steps if "loss" in r]
    loss_ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], linewidth=0.8)
    loss_ax.set(xlabel="step", ylabel="loss", title="training loss")
    save_png(fig, path)
