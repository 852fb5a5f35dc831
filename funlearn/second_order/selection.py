"""Choosing a closed-form method's strength (alpha) on evaluation data, by a replaceable rule.

Closed-form methods (Fisher forgetting, Newton/influence removal) produce one candidate per
``(alpha, repeat)``; each is evaluated on named evaluation sets (``eval_data = {"retain": ...,
"forget": ..., "test": ...}``, iterables of ``(x, y)``; use held-out or evaluation subsets, not the
training loaders) and scored by ``rule(metrics, original) -> float`` (higher is better), with
``metrics`` and ``original`` the accuracies of the candidate and of the unmodified model.

The default rules are stated proxies until the evaluation against a retrained reference is
available; they never reward driving forget accuracy to zero under random forgetting, where a
retrained model classifies forget samples about as well as unseen ones (methods.md N6):

- :class:`RandomForgettingRule`: ``-|acc_forget - acc_heldout| - 10 * max(0, drop_retain - tol)``
  (forget accuracy should fall to the held-out accuracy, retain accuracy should not drop by more
  than ``tol`` from the original);
- :class:`ClasswiseRule`: ``-acc_forget - 10 * max(0, drop_retain - tol)`` (forgotten classes
  should be misclassified, retain accuracy kept within ``tol``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from funlearn.model import Buffers, FunctionalModel, Params

__all__ = [
    "SelectionRule",
    "RandomForgettingRule",
    "ClasswiseRule",
    "default_rule",
    "ClosedFormResult",
]

EvalData = Mapping[str, Iterable[tuple[torch.Tensor, torch.Tensor]]]


class SelectionRule(Protocol):
    """``rule(metrics, original) -> score`` (higher is better); ``required`` names the eval sets."""

    required: tuple[str, ...]

    def __call__(self, metrics: Mapping[str, float], original: Mapping[str, float]) -> float: ...


def _penalty(metrics: Mapping[str, float], original: Mapping[str, float], tolerance: float) -> float:
    return 10.0 * max(0.0, (original["retain"] - metrics["retain"]) - tolerance)


@dataclass(frozen=True)
class RandomForgettingRule:
    """``-|acc_forget - acc_<heldout>| - 10 * max(0, (retain_0 - retain) - tolerance)``."""

    tolerance: float = 0.02
    heldout: str = "test"

    @property
    def required(self) -> tuple[str, ...]:
        return ("retain", "forget", self.heldout)

    def __call__(self, metrics: Mapping[str, float], original: Mapping[str, float]) -> float:
        return -abs(metrics["forget"] - metrics[self.heldout]) - _penalty(metrics, original, self.tolerance)


@dataclass(frozen=True)
class ClasswiseRule:
    """``-acc_forget - 10 * max(0, (retain_0 - retain) - tolerance)``."""

    tolerance: float = 0.02
    required: tuple[str, ...] = ("retain", "forget")

    def __call__(self, metrics: Mapping[str, float], original: Mapping[str, float]) -> float:
        return -metrics["forget"] - _penalty(metrics, original, self.tolerance)


def default_rule(forget_classes: Iterable[int] | None) -> SelectionRule:
    """:class:`ClasswiseRule` when whole classes are forgotten, else :class:`RandomForgettingRule`."""
    return ClasswiseRule() if forget_classes else RandomForgettingRule()


@torch.no_grad()
def evaluate_accuracy(model: FunctionalModel, params: Params, buffers: Buffers, eval_data: EvalData) -> dict[str, float]:
    """Eval-mode top-1 accuracy on each named set: ``{name: accuracy in [0, 1]}``."""
    out = {}
    for name, data in eval_data.items():
        correct, total = 0, 0
        for x, y in data:
            correct += int((model.logits(params, buffers, x).argmax(-1) == y).sum())
            total += y.numel()
        if total == 0:
            raise ValueError(f"eval_data[{name!r}] yielded no samples")
        out[name] = correct / total
    return out


@dataclass
class ClosedFormResult:
    """The chosen candidate's ``params``/``buffers``, every candidate's row (its hyperparameters,
    accuracies and score) in ``table``, the index ``best`` of the chosen row, and the original
    model's accuracies."""

    params: Params
    buffers: Buffers
    table: list[dict[str, Any]]
    best: int
    original: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        """The table, with the original model's accuracies first and the chosen row marked."""
        cols = list(self.table[0]) if self.table else []
        cell = lambda v: f"{v + 0.0:.4g}" if isinstance(v, float) else str(v)
        rows = [[cell(self.original[c]) if c in self.original else "" for c in cols]]
        rows[0][0] = "original"
        rows += [[cell(row[c]) for c in cols] for row in self.table]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
        for i, r in enumerate(rows):
            lines.append("  ".join(v.rjust(w) for v, w in zip(r, widths)) + ("  <- chosen" if i - 1 == self.best else ""))
        return "\n".join(lines)


def check_eval_data(eval_data: EvalData, rule: SelectionRule) -> None:
    """Raise before any work if ``eval_data`` lacks a set the rule reads."""
    if not isinstance(eval_data, Mapping) or not eval_data:
        raise ValueError("eval_data must be a dict of named evaluation sets, e.g. "
                         "{'retain': ..., 'forget': ..., 'test': ...} (iterables of (x, y))")  # fmt: skip
    missing = [k for k in getattr(rule, "required", ()) if k not in eval_data]
    if missing:
        raise ValueError(f"the selection rule needs eval_data[{missing[0]!r}] (missing {missing}); "
                         "pass held-out or evaluation subsets under those names")  # fmt: skip


def search_candidates(
    model: FunctionalModel,
    buffers: Buffers,
    candidates: Iterator[tuple[dict[str, Any], Params]] | Iterable[tuple[dict[str, Any], Params]],
    eval_data: EvalData,
    rule: SelectionRule | Callable[[Mapping[str, float], Mapping[str, float]], float],
    original: dict[str, float],
    *,
    total: int | None = None,
    progress: bool = True,
) -> ClosedFormResult:
    """Evaluate each ``(row, params)`` candidate, score it, keep only the best params (the first
    wins ties). ``row`` holds the candidate's hyperparameters, e.g. ``{"alpha": 1e-7, "repeat": 0}``."""
    table: list[dict[str, Any]] = []
    best, best_score, best_params = -1, -float("inf"), None
    for row, params in tqdm(candidates, total=total, desc="candidates", disable=not progress, leave=False):
        metrics = evaluate_accuracy(model, params, buffers, eval_data)
        score = float(rule(metrics, original))
        table.append({**row, **metrics, "score": score})
        if best_params is None or score > best_score:
            best, best_score, best_params = len(table) - 1, score, params
    if best_params is None:
        raise ValueError("no candidates to choose from (empty alphas?)")
    return ClosedFormResult(best_params, buffers, table, best, original)
