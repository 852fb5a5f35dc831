"""The history of a run: one record per step and one per evaluation, written as JSON and CSV.

A record is a flat ``{name: number | bool | str}`` dict.

- **Step records** (``history.steps``): ``step`` (1-based count of steps taken), ``epoch`` (1-based),
  ``batch`` (0-based index in the epoch), ``time`` (wall seconds since the run started, across
  resumes), ``samples_per_s`` (samples of the step / wall time since the previous step),
  ``skipped`` (the step's result was discarded by the divergence guard), then every metric the
  method returned (``loss``, ``lr`` when the method reports one, ...).
- **Evaluation records** (``history.evals``): ``step``, ``epoch``, ``time``, ``loss`` (mean step
  loss since the previous evaluation), ``lr`` (the last one reported), the accuracies
  ``acc/<loader>`` in %, and the user metrics.

Files: ``history.json`` (both tables plus the stop reason and the best record; non-finite numbers
are written as ``null`` so the file is standard JSON), ``history.csv`` (the evaluation table) and
``steps.csv`` (the step table). All three are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funlearn.io import atomic_write_text

__all__ = ["History", "Record", "load_history"]

Record = dict[str, Any]

FORMAT = "funlearn.history"
VERSION = 1


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _from_json(value: Any) -> Any:
    return math.nan if value is None else value


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for row in rows:
        cols.update(dict.fromkeys(row))
    return list(cols)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.4f}" if math.isnan(value) or 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.4g}"


@dataclass
class History:
    """Step and evaluation records of a run, with the reason it stopped and its best record."""

    steps: list[Record] = field(default_factory=list)
    evals: list[Record] = field(default_factory=list)
    stop_reason: str | None = None
    best: Record | None = None

    def column(self, name: str, *, table: str = "evals") -> list[Any]:
        """The values of ``name`` over the ``"evals"`` (default) or ``"steps"`` table, skipping rows without it."""
        return [row[name] for row in getattr(self, table) if name in row]

    def truncate(self, step: int) -> None:
        """Drop the records of steps after ``step`` (used when resuming from a checkpoint at ``step``)."""
        self.steps = [r for r in self.steps if r["step"] <= step]
        self.evals = [r for r in self.evals if r["step"] <= step]
        self.stop_reason = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"format", "version", "stop_reason", "best", "evals", "steps"}``."""

        def safe(rows: list[Record]) -> list[Record]:
            return [{k: _json_safe(v) for k, v in row.items()} for row in rows]

        best = None if self.best is None else {k: _json_safe(v) for k, v in self.best.items()}
        return {
            "format": FORMAT,
            "version": VERSION,
            "stop_reason": self.stop_reason,
            "best": best,
            "evals": safe(self.evals),
            "steps": safe(self.steps),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Inverse of :meth:`to_dict` (``null`` numbers come back as NaN)."""
        if data.get("format") != FORMAT or int(data.get("version", 0)) > VERSION:
            raise ValueError(
                f"not a funlearn history (format {data.get('format')!r}, version {data.get('version')!r}); "
                f"expected format {FORMAT!r} version <= {VERSION}"
            )

        def rows(name: str) -> list[Record]:
            return [{k: _from_json(v) for k, v in row.items()} for row in data.get(name, [])]

        best = data.get("best")
        return cls(rows("steps"), rows("evals"), data.get("stop_reason"),
                   None if best is None else {k: _from_json(v) for k, v in best.items()})  # fmt: skip

    def write(self, directory: str | Path) -> None:
        """Write ``history.json``, ``history.csv`` (evaluations) and ``steps.csv`` into ``directory``, atomically."""
        directory = Path(directory)
        atomic_write_text(directory / "history.json", json.dumps(self.to_dict(), allow_nan=False, indent=1))
        atomic_write_text(directory / "history.csv", _csv(self.evals))
        atomic_write_text(directory / "steps.csv", _csv(self.steps))

    def table(self, keys: Sequence[str] | None = None) -> str:
        """The evaluation records as an aligned text table (all columns, or ``keys``)."""
        keys = list(keys) if keys is not None else [k for k in _columns(self.evals) if k != "time"]
        cells = [keys] + [[_format(row[k]) if k in row else "" for k in keys] for row in self.evals]
        widths = [max(len(r[i]) for r in cells) for i in range(len(keys))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)

    def __repr__(self) -> str:
        return f"History(steps={len(self.steps)}, evals={len(self.evals)}, stop_reason={self.stop_reason!r})"


def load_history(path: str | Path) -> History:
    """Read a ``history.json`` (or the run directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "history.json"
    return History.from_dict(json.loads(path.read_text()))
