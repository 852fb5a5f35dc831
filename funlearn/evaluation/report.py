"""Results tables: methods x metrics, with the original and retrained rows, gaps and time.

:func:`make_report` turns :class:`~funlearn.UnlearningEvaluation` records (or plain dicts with the
same keys) into a :class:`Report` that renders as a fixed-width console table, Markdown, CSV and
JSON; CSV and JSON load back (:meth:`Report.from_csv`, :meth:`Report.from_json`). Columns are
metric keys of :data:`~funlearn.METRICS` (labels, units and targets come from there); a default
column that no row has a value for is left out. Values are stored at full precision and rounded
only for display: percentages to 2 decimals, [0, 1] scores and bits to 4, seconds to 2.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funlearn.evaluation.evaluate import METRICS, UnlearningEvaluation
from funlearn.io import atomic_write_text

__all__ = ["DEFAULT_COLUMNS", "Report", "make_report"]

DEFAULT_COLUMNS: tuple[str, ...] = (
    "retain_acc",
    "forget_acc",
    "test_acc",
    "test_forget_acc",
    "mia_efficacy",
    "mia_loss_auc",
    "js_forget",
    "agreement_forget",
    "zrf",
    "gap_forget",
    "gap_retain",
    "gap_test",
    "gap_mia",
    "avg_gap",
    "time_s",
    "time_fraction",
)

_DECIMALS = {"%": 2, "[0,1]": 4, "bits": 4, "s": 2, "x": 3}
_TARGETS = {
    "higher": "higher is better",
    "lower": "lower is better",
    "retrain": "target: the retrained model",
}
Row = dict[str, Any]


def _label(key: str) -> str:
    return METRICS[key].label if key in METRICS else key


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{_DECIMALS[METRICS[key].unit] if key in METRICS else 4}f}"
    return str(value)


@dataclass
class Report:
    """A table: ``rows`` of ``{"method": name, column: number | None, ...}`` in display order."""

    columns: list[str]
    rows: list[Row]
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def _grid(self) -> tuple[list[str], list[list[str]]]:
        header = ["method", *(_label(c) for c in self.columns)]
        body = [[str(r["method"]), *(_cell(c, r.get(c)) for c in self.columns)] for r in self.rows]
        return header, body

    def legend(self) -> list[str]:
        """One line per column: label, meaning, unit and direction."""
        return [
            f"{_label(c)}: {METRICS[c].description} ({METRICS[c].unit}; {_TARGETS[METRICS[c].target]})"
            for c in self.columns
            if c in METRICS
        ]

    def console(self, *, legend: bool = False) -> str:
        """A fixed-width table (method left-aligned, numbers right-aligned), optionally with the legend."""
        header, body = self._grid()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            return "  ".join(
                [first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
            ).rstrip()

        lines = [self.title] if self.title else []
        lines += [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in body)]
        lines += self.notes
        if legend:
            lines += ["", *self.legend()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.console()

    def markdown(self, *, legend: bool = True) -> str:
        """A GitHub Markdown table (numbers right-aligned), then the notes and the legend as a list."""
        header, body = self._grid()
        lines = [f"**{self.title}**", ""] if self.title else []

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines += [
            line(header),
            "|" + "|".join([":---", *(["---:"] * len(self.columns))]) + "|",
            *map(line, body),
        ]
        extra = [*self.notes, *(self.legend() if legend else [])]
        if extra:
            lines += ["", *(f"- {x}" for x in extra)]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        """CSV with a ``method`` column and one column per metric key; empty cells for None."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["method", *self.columns])
        for r in self.rows:
            writer.writerow([r["method"], *("" if r.get(c) is None else repr(r[c]) for c in self.columns)])
        return buffer.getvalue()

    def json(self) -> str:
        """Strict JSON: ``{"title", "columns", "rows", "notes"}``."""
        payload = {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes}
        return json.dumps(payload, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        return cls(
            columns=list(data["columns"]), rows=list(data["rows"]), title=data["title"], notes=data["notes"]
        )

    @classmethod
    def from_csv(cls, text: str, *, title: str = "") -> Report:
        reader = csv.reader(io.StringIO(text))
        header = next(reader)
        if not header or header[0] != "method":
            raise ValueError(f"a report CSV starts with a 'method' column, got header {header}")
        rows = [
            {
                "method": cells[0],
                **{c: (float(v) if v else None) for c, v in zip(header[1:], cells[1:], strict=True)},
            }
            for cells in reader
        ]
        return cls(columns=header[1:], rows=rows, title=title)

    def save(self, directory: str | os.PathLike, name: str = "report") -> dict[str, Path]:
        """Write ``name.md``, ``name.csv``, ``name.json`` and ``name.txt`` (console) atomically."""
        directory = Path(directory)
        texts = {
            "md": self.markdown(),
            "csv": self.csv(),
            "json": self.json(),
            "txt": self.console(legend=True) + "\n",
        }
        paths = {}
        for ext, text in texts.items():
            paths[ext] = directory / f"{name}.{ext}"
            atomic_write_text(paths[ext], text)
        return paths


def _as_row(name: str, record: UnlearningEvaluation | Mapping[str, Any]) -> Row:
    values = record.as_dict() if isinstance(record, UnlearningEvaluation) else dict(record)
    for key, value in values.items():
        if value is not None and not isinstance(value, (int, float)):
            raise ValueError(f"{name}: metric {key!r} must be a number or None, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: metric {key!r} is {value}; a report holds finite numbers only")
    return {"method": name, **values}


def make_report(
    methods: Mapping[str, UnlearningEvaluation | Mapping[str, Any]],
    *,
    original: UnlearningEvaluation | Mapping[str, Any] | None = None,
    retrained: UnlearningEvaluation | Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    title: str = "",
    notes: Sequence[str] = (),
) -> Report:
    """Rows ``original``, ``retrain`` (when given), then ``methods`` in order; ``columns`` default to
    :data:`DEFAULT_COLUMNS` that some row has. ``notes`` (e.g. the command that made the table) are
    printed under it."""
    named = {"original": original, "retrain": retrained}
    clashes = sorted(set(methods) & {k for k, v in named.items() if v is not None})
    if clashes:
        raise ValueError(f"method names {clashes} are reserved for the original and retrained rows")
    entries = [(k, v) for k, v in named.items() if v is not None] + list(methods.items())
    if not entries:
        raise ValueError("a report needs at least one row (methods, original or retrained)")
    rows = [_as_row(name, record) for name, record in entries]
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if any(r.get(c) is not None for r in rows)]
    else:
        unknown = [c for c in columns if not any(c in r for r in rows)]
        if unknown:
            raise ValueError(f"columns {unknown} are in no row; known metrics: {', '.join(METRICS)}")
    return Report(columns=list(columns), rows=rows, title=title, notes=list(notes))
