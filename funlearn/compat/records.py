"""torchunlearn's record table and ``save_best`` codes, on funlearn's evaluation records.

Record names: ``Clean(R)`` is the accuracy (%) on the loader registered as ``"(R)"`` by
``record_rob`` (funlearn's ``acc/(R)``), ``Cost`` the mean training loss since the previous row
(torchunlearn printed the last batch's), ``lr`` the learning rate of the row's last step, ``s/it``
the mean wall seconds per iteration since the previous row.

``save_best={"Clean(R)": "HB", "Clean(F)": "LBO"}`` becomes funlearn's lexicographic criterion
``{"acc/(R)": "max", "acc/(F)": "min"}``: the ``HB``/``LB`` keys (higher/lower is better) in their
order first, then the ``HBO``/``LBO`` tie-breakers. A record is best only when strictly better;
among equal records the earliest stays, and a NaN value is never best. torchunlearn instead used a
Pareto "no primary key worse" test (which can stick at an early incomparable record), let later
records win ties of the tie-breakers, and accepted NaN in the first record and the tie-breakers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["BEST_CODES", "best_criterion", "record_name", "RecordTable"]

BEST_CODES = {"HB": ("max", 0), "LB": ("min", 0), "HBO": ("max", 1), "LBO": ("min", 1)}


def record_name(key: str, flags: Iterable[str]) -> str:
    """funlearn's record key for a torchunlearn record name (``Clean(R)`` -> ``acc/(R)``, ``Cost`` -> ``loss``)."""
    flags = list(flags)
    if key.startswith("Clean") and key[len("Clean"):] in flags:
        return "acc/" + key[len("Clean"):]
    if key == "Cost":
        return "loss"
    known = [f"Clean{f}" for f in flags] + ["Cost"]
    raise ValueError(f"save_best key {key!r} is not recorded; recorded keys: {known} (register loaders with record_rob)")


def best_criterion(save_best: Mapping[str, str], flags: Iterable[str]) -> dict[str, str]:
    """The funlearn criterion for torchunlearn's ``save_best`` dict (see the module docstring)."""
    if not isinstance(save_best, Mapping) or not save_best:
        raise ValueError(f"save_best must be a dict such as {{'Clean(R)': 'HB', 'Clean(F)': 'LBO'}}, got {save_best!r}")
    ranked = []
    for i, (key, code) in enumerate(save_best.items()):
        if code not in BEST_CODES:
            raise ValueError(f"save_best[{key!r}] = {code!r}: use 'HB', 'LB' (primary) or 'HBO', 'LBO' (tie-break)")
        direction, tier = BEST_CODES[code]
        ranked.append((tier, i, record_name(key, flags), direction))
    return {name: direction for _, _, name, direction in sorted(ranked)}


class RecordTable:
    """Prints one row per evaluation record: Epoch[, Iter], Cost, Clean(...) for each flag, lr, s/it."""

    def __init__(self, flags: Iterable[str], *, with_iter: bool, lr_at: Any, steps_per_epoch: int) -> None:
        self.flags, self.with_iter, self.lr_at = list(flags), with_iter, lr_at
        self.steps_per_epoch = steps_per_epoch
        self.columns = ["Epoch"] + (["Iter"] if with_iter else []) + ["Cost"] + [f"Clean{f}" for f in self.flags]
        self.columns += ["lr", "s/it"]
        self.rows: list[dict[str, Any]] = []
        self.previous: tuple[int, float] | None = None  # (step, time) of the last row

    def values(self, record: Mapping[str, Any], previous: tuple[int, float] | None = None) -> dict[str, Any]:
        """The torchunlearn-named values of one funlearn evaluation record; ``s/it`` since ``previous``
        ``(step, time)`` (NaN without it)."""
        step, time = int(record["step"]), float(record["time"])
        out: dict[str, Any] = {"Epoch": record["epoch"]}
        if self.with_iter:
            out["Iter"] = (step - 1) % self.steps_per_epoch + 1 if step else 0
        out["Cost"] = record.get("loss", math.nan)
        out.update({f"Clean{f}": record.get(f"acc/{f}", math.nan) for f in self.flags})
        out["lr"] = self.lr_at(max(step - 1, 0))
        last_step, last_time = previous or (step, time)
        out["s/it"] = (time - last_time) / (step - last_step) if step > last_step else math.nan
        return out

    @staticmethod
    def _cell(key: str, value: Any) -> str:
        if key in ("Epoch", "Iter"):
            return str(value)
        if key.startswith("Clean"):
            return f"{value:.2f}%"
        return f"{value:.4g}" if key == "lr" else f"{value:.4f}"

    def _line(self, cells: list[str]) -> str:
        return "".join(c.ljust(max(len(col) + 3, 10)) for c, col in zip(cells, self.columns)).rstrip()

    def header(self) -> str:
        head = self._line(self.columns)
        return f"{head}\n{'=' * len(head)}"

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Print the header before the first row, then the row (``on_evaluation`` of :func:`funlearn.run`)."""
        row = self.values(record, self.previous or (0, 0.0))
        self.previous = (int(record["step"]), float(record["time"]))
        if not self.rows:
            print(self.header())
        self.rows.append(row)
        print(self._line([self._cell(k, row[k]) for k in self.columns]))

    def footer(self) -> str:
        return "=" * len(self._line(self.columns))
