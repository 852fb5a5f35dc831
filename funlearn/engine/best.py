"""Which evaluation record is the best: a stated criterion, and NaN never wins.

A criterion is one of:

- a dict ``{metric: direction}`` applied **lexicographically** in its order: the first metric
  decides, the next ones only break exact ties. A direction is ``"max"``, ``"min"`` or
  :func:`closest_to` ``(value)`` (smallest ``|metric - value|``), e.g.
  ``{"acc/forget": closest_to(88.2), "acc/retain": "max"}``: forget accuracy closest to the
  retrained model's, ties broken by the higher retain accuracy;
- a callable ``record -> float``, higher is better.

A record replaces the current best only when it is strictly better, so among equal records the
earliest stays. A record whose criterion values include NaN is never best (not even the first).
Unlike torchunlearn's ``HB``/``LB`` keys (a Pareto "no key worse" test that can get stuck at an early
incomparable point, Sec. 3.7 of the reference), the order is total.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Union

__all__ = ["BestCriterion", "closest_to", "select_best"]


class closest_to(NamedTuple):  # lower case: it reads as a direction, like "max"/"min"
    """Direction "closest to ``value``": the score is ``-|metric - value|``."""

    value: float


Direction = Union[str, closest_to]
CriterionSpec = Union[Mapping[str, Direction], Callable[[Mapping[str, Any]], float], "BestCriterion"]


class BestCriterion:
    """A total order on records built from a dict of directions or a scoring callable (see module doc)."""

    def __init__(self, spec: CriterionSpec) -> None:
        if isinstance(spec, BestCriterion):
            self.directions, self.score_fn = spec.directions, spec.score_fn
            return
        self.score_fn: Callable[[Mapping[str, Any]], float] | None = None
        self.directions: dict[str, Direction] = {}
        if callable(spec) and not isinstance(spec, Mapping):
            self.score_fn = spec
            return
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError(
                f"best must be a non-empty dict {{metric: 'max' | 'min' | closest_to(v)}} or a callable "
                f"record -> float (got {spec!r})"
            )
        for name, direction in spec.items():
            if not (direction in ("max", "min") or isinstance(direction, closest_to)):
                raise ValueError(
                    f"best[{name!r}] = {direction!r}: use 'max', 'min' or closest_to(value)"
                )
        self.directions = dict(spec)

    @property
    def keys(self) -> list[str]:
        """The metrics the criterion reads (empty for a callable)."""
        return list(self.directions)

    def score(self, record: Mapping[str, Any]) -> tuple[float, ...] | None:
        """A tuple that is larger for better records, or ``None`` when a value is NaN (never best)."""
        if self.score_fn is not None:
            values = (float(self.score_fn(record)),)
        else:
            missing = [k for k in self.directions if k not in record]
            if missing:
                raise ValueError(
                    f"the best criterion reads {missing}, which the evaluation does not record "
                    f"(recorded: {sorted(record)}); add the loader or metric, or change best="
                )
            values = tuple(_signed(float(record[k]), d) for k, d in self.directions.items())
        return None if any(math.isnan(v) for v in values) else values

    def is_better(self, record: Mapping[str, Any], best: Mapping[str, Any] | None) -> bool:
        """Whether ``record`` strictly beats ``best`` (any valid record beats ``None``)."""
        new = self.score(record)
        if new is None:
            return False
        old = None if best is None else self.score(best)
        return old is None or new > old

    def __repr__(self) -> str:
        return f"BestCriterion({self.score_fn if self.score_fn is not None else self.directions!r})"


def _signed(value: float, direction: Direction) -> float:
    if isinstance(direction, closest_to):
        return -abs(value - direction.value)
    return value if direction == "max" else -value


def select_best(records: Sequence[Mapping[str, Any]], criterion: CriterionSpec) -> int | None:
    """Index of the best record (the earliest among equals), or ``None`` if every record has NaN."""
    criterion = BestCriterion(criterion)
    best: int | None = None
    for i, record in enumerate(records):
        if criterion.is_better(record, None if best is None else records[best]):
            best = i
    return best
