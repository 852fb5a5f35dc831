"""Forgetting scenarios: which training samples are forgotten and which are retained.

Every scenario is a pure function of the labels (and a seed): it never touches a global RNG and
returns a :class:`Split` whose ``retain`` and ``forget`` index tensors are sorted, disjoint and
together cover ``range(N)``. Invalid arguments raise ``ValueError`` before any work.

* ``random_split``: ``n = round(ratio * N)`` samples (or ``count``), either stratified with exact
  per-class counts (largest-remainder apportionment) or uniform over the whole set.
* ``classwise_split``: every sample of one or several classes (and the test set split likewise).
* ``subclass_split``: ``round(ratio * N_c)`` random samples of one class ``c``.
* ``explicit_split``: indices chosen by the user.
* ``parse_scenario`` / ``make_split``: the same from a command-line string such as ``"random:0.1"``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from funlearn.data.streams import Stream
from funlearn.random import key

__all__ = [
    "Scenario",
    "Split",
    "classwise_split",
    "explicit_split",
    "make_split",
    "parse_scenario",
    "random_split",
    "subclass_split",
]

IntArray = torch.Tensor | Sequence[int]


@dataclass(frozen=True, eq=False)
class Split:
    """A forget/retain partition of a training set of ``N`` samples.

    ``retain`` and ``forget`` are sorted int64 index tensors, disjoint, covering ``range(N)``.
    For class-wise forgetting, ``test_retain``/``test_forget`` index the test samples of the kept
    and the forgotten classes, and ``forget_classes`` names the forgotten classes; otherwise None.
    """

    retain: torch.Tensor
    forget: torch.Tensor
    description: str
    test_retain: torch.Tensor | None = None
    test_forget: torch.Tensor | None = None
    forget_classes: tuple[int, ...] | None = None

    @property
    def num_samples(self) -> int:
        """``N``, the size of the training set the split partitions."""
        return self.retain.numel() + self.forget.numel()

    def __repr__(self) -> str:
        return f"Split({self.description!r}, retain={self.retain.numel()}, forget={self.forget.numel()})"


# --------------------------------------------------------------------------- validation helpers


def _as_labels(labels: IntArray, name: str = "labels") -> torch.Tensor:
    """``labels`` as a 1-D int64 CPU tensor; rejects empty, float and bool input."""
    t = torch.as_tensor(labels)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of class ids (got shape {tuple(t.shape)})")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integer class ids (got dtype {t.dtype}); pass e.g. bundle.train_y"
        )
    return t.detach().to("cpu", torch.int64)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_seed(seed: int) -> int:
    if not _is_int(seed):
        raise ValueError(f"seed must be an int (got {seed!r}); pass e.g. seed=0")
    return seed


def _check_ratio(ratio: float, name: str = "ratio") -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 < ratio < 1.0:
        raise ValueError(
            f"{name} must lie strictly between 0 and 1 (got {ratio!r}); pass a fraction such as 0.1"
        )
    return float(ratio)


def _check_sizes(n_forget: int, n_total: int, what: str, fix: str) -> None:
    if n_forget == 0:
        raise ValueError(f"{what} forgets 0 of {n_total} samples (empty forget set); {fix}")
    if n_forget == n_total:
        raise ValueError(f"{what} forgets all {n_total} samples (empty retain set); {fix}")


def _describe_classes(present: torch.Tensor) -> str:
    values = present.tolist()
    contiguous = values == list(range(values[0], values[-1] + 1))
    return f"{values[0]}..{values[-1]}" if contiguous and len(values) > 3 else ", ".join(map(str, values))


def _from_mask(forget_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (retain, forget) index tensors of a boolean forget mask."""
    return (~forget_mask).nonzero().squeeze(1), forget_mask.nonzero().squeeze(1)


# --------------------------------------------------------------------------------- scenarios


def _largest_remainder(class_counts: torch.Tensor, total: int) -> torch.Tensor:
    """Integer quotas ``k_c`` with ``sum k_c = total`` and ``k_c`` = floor or ceil of ``total * n_c / N``.

    Exact integer arithmetic: floors first, then one more for the largest remainders (ties go to the
    lower class index).
    """
    n = int(class_counts.sum())
    scaled = class_counts * total
    quotas = scaled // n
    remainders = scaled % n
    missing = total - int(quotas.sum())
    order = torch.sort(-remainders, stable=True).indices
    quotas[order[:missing]] += 1
    return quotas


def random_split(
    labels: IntArray,
    ratio: float | None = None,
    *,
    count: int | None = None,
    stratified: bool = True,
    seed: int = 0,
) -> Split:
    """Forget ``n = round(ratio * N)`` (or ``count``) random samples.

    Stratified: class ``c`` (with ``N_c`` samples) gives exactly ``k_c`` samples, the
    largest-remainder apportionment of ``n`` to the quotas ``n * N_c / N``, so ``sum k_c = n``.
    Within each class the samples are chosen uniformly, independently across classes. Uniform
    (``stratified=False``): ``n`` samples uniformly from the whole set. Draws come from a
    generator seeded by ``seed``; the global RNG is never used.
    """
    y = _as_labels(labels)
    n_total = y.numel()
    _check_seed(seed)
    if (ratio is None) == (count is None):
        raise ValueError(
            "random_split needs exactly one of ratio (a fraction) or count (a number of samples)"
        )
    if ratio is not None:
        ratio = _check_ratio(ratio)
        n_forget = round(ratio * n_total)
        what = f"ratio={ratio} (round({ratio} * {n_total}) = {n_forget})"
        fix = "pass a ratio nearer 0.5, or count=... for an exact number"
    else:
        if not _is_int(count) or count < 1:
            raise ValueError(f"count must be a positive int (got {count!r}); pass e.g. count=500")
        if count > n_total:
            raise ValueError(
                f"count={count} exceeds the {n_total} samples; pass count < {n_total} or a ratio"
            )
        n_forget = int(count)
        what = f"count={count}"
        fix = f"pass 1 <= count < {n_total}"
    _check_sizes(n_forget, n_total, what, fix)

    perm = torch.randperm(n_total, generator=key(seed, Stream.RANDOM_SPLIT))
    if stratified:
        _, inverse, class_counts = torch.unique(y, return_inverse=True, return_counts=True)
        quotas = _largest_remainder(class_counts, n_forget)
        # Group a random permutation by class: within each class the order is uniformly random.
        grouped = perm[torch.sort(inverse[perm], stable=True).indices]
        group_start = torch.cumsum(class_counts, 0) - class_counts
        cls = inverse[grouped]
        rank_in_class = torch.arange(n_total) - group_start[cls]
        chosen = grouped[rank_in_class < quotas[cls]]
    else:
        chosen = perm[:n_forget]
    mask = torch.zeros(n_total, dtype=torch.bool)
    mask[chosen] = True
    retain, forget = _from_mask(mask)
    kind = "stratified" if stratified else "uniform"
    return Split(retain, forget, f"random {n_forget} of {n_total} samples ({kind}, seed {seed})")


def _check_classes(y: torch.Tensor, classes: int | Sequence[int], name: str) -> tuple[int, ...]:
    wanted = (classes,) if _is_int(classes) else tuple(classes)
    if not wanted:
        raise ValueError(f"{name} is empty; pass a class id or a list of class ids, e.g. {name}=3")
    if not all(_is_int(c) for c in wanted):
        raise ValueError(f"{name} must be ints (got {wanted!r}); pass e.g. {name}=[3, 5]")
    wanted = tuple(int(c) for c in wanted)
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"{name} repeats a class ({wanted!r}); pass each class once")
    present = torch.unique(y)
    missing = [c for c in wanted if not bool((present == c).any())]
    if missing:
        raise ValueError(
            f"{name}: class {missing[0]} does not exist in the labels (classes present: "
            f"{_describe_classes(present)}); pass one of those"
        )
    return tuple(sorted(wanted))


def classwise_split(
    labels: IntArray,
    classes: int | Sequence[int],
    *,
    test_labels: IntArray | None = None,
) -> Split:
    """Forget every training sample whose label is in ``classes``.

    With ``test_labels``, ``test_forget``/``test_retain`` are the test samples of the forgotten /
    the kept classes (sorted).
    """
    y = _as_labels(labels)
    wanted = _check_classes(y, classes, "classes")
    y_test = None if test_labels is None else _as_labels(test_labels, "test_labels")
    targets = torch.tensor(wanted)
    mask = torch.isin(y, targets)
    if bool(mask.all()):
        raise ValueError(
            f"classes={list(wanted)} covers every class, leaving an empty retain set; forget fewer classes"
        )
    retain, forget = _from_mask(mask)
    test_retain = test_forget = None
    if y_test is not None:
        test_retain, test_forget = _from_mask(torch.isin(y_test, targets))
    names = ", ".join(map(str, wanted))
    label = "class" if len(wanted) == 1 else "classes"
    return Split(
        retain,
        forget,
        f"{label} {names}: {forget.numel()} of {y.numel()} samples",
        test_retain=test_retain,
        test_forget=test_forget,
        forget_classes=wanted,
    )


def subclass_split(labels: IntArray, cls: int, ratio: float, *, seed: int = 0) -> Split:
    """Forget ``round(ratio * N_cls)`` uniformly chosen samples of class ``cls`` (seeded)."""
    y = _as_labels(labels)
    (cls,) = _check_classes(y, [cls], "cls")
    ratio = _check_ratio(ratio)
    _check_seed(seed)
    members = (y == cls).nonzero().squeeze(1)
    n_forget = round(ratio * members.numel())
    if n_forget == 0:
        raise ValueError(
            f"ratio={ratio} of the {members.numel()} samples of class {cls} rounds to 0 (empty forget set); "
            "increase ratio"
        )
    chosen = members[
        torch.randperm(members.numel(), generator=key(seed, Stream.SUBCLASS_SPLIT, cls))[:n_forget]
    ]
    mask = torch.zeros(y.numel(), dtype=torch.bool)
    mask[chosen] = True
    retain, forget = _from_mask(mask)
    return Split(
        retain, forget, f"subclass: {n_forget} of the {members.numel()} samples of class {cls} (seed {seed})"
    )


def explicit_split(num_samples_or_labels: int | IntArray, forget_indices: IntArray) -> Split:
    """Forget exactly ``forget_indices`` (into a training set of ``N`` samples, given or from labels)."""
    if _is_int(num_samples_or_labels):
        n_total = int(num_samples_or_labels)
        if n_total < 2:
            raise ValueError(
                f"num_samples_or_labels={n_total} must be at least 2; pass the training set size"
            )
    else:
        n_total = _as_labels(num_samples_or_labels, "num_samples_or_labels").numel()
    idx = torch.as_tensor(forget_indices)
    if idx.dim() != 1 or idx.numel() == 0:
        raise ValueError(
            f"forget_indices must be a non-empty 1-D list of indices (got shape {tuple(idx.shape)})"
        )
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise ValueError(
            f"forget_indices must be integers (got dtype {idx.dtype}); pass a list or LongTensor of indices"
        )
    idx = idx.to("cpu", torch.int64)
    bad = idx[(idx < 0) | (idx >= n_total)]
    if bad.numel():
        more = f" and {bad.numel() - 3} more" if bad.numel() > 3 else ""
        raise ValueError(
            f"forget_indices: {bad[:3].tolist()}{more} out of range [0, {n_total}); "
            "pass indices into the training set"
        )
    counts = torch.bincount(idx, minlength=n_total)
    repeated = (counts > 1).nonzero().squeeze(1)
    if repeated.numel():
        more = f" and {repeated.numel() - 3} more" if repeated.numel() > 3 else ""
        raise ValueError(f"forget_indices: {repeated[:3].tolist()}{more} repeated; pass each index once")
    _check_sizes(idx.numel(), n_total, f"forget_indices ({idx.numel()} indices)", "pass fewer indices")
    retain, forget = _from_mask(counts > 0)
    return Split(retain, forget, f"explicit: {forget.numel()} of {n_total} samples")


# ------------------------------------------------------------------------------ spec strings


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario string; ``kind`` is ``random``, ``class``, ``subclass`` or ``indices``."""

    kind: str
    ratio: float | None = None
    count: int | None = None
    stratified: bool = True
    classes: tuple[int, ...] = ()
    path: str | None = None

    def split(self, train_labels: IntArray, test_labels: IntArray | None = None, seed: int = 0) -> Split:
        """The :class:`Split` of ``train_labels`` this scenario describes."""
        if self.kind == "random":
            return random_split(
                train_labels, self.ratio, count=self.count, stratified=self.stratified, seed=seed
            )
        if self.kind == "class":
            return classwise_split(train_labels, self.classes, test_labels=test_labels)
        if self.kind == "subclass":
            return subclass_split(train_labels, self.classes[0], self.ratio, seed=seed)
        return explicit_split(train_labels, read_indices(self.path))


_SPEC_HELP = (
    'expected "random:0.1", "random:500", "random:0.1:uniform", "class:3", "class:3,5", '
    '"subclass:3:0.5" or "indices:path/to/file.txt"'
)


def _spec_int(text: str, spec: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"scenario {spec!r}: {what} {text!r} is not an integer; {_SPEC_HELP}") from None


def _spec_float(text: str, spec: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"scenario {spec!r}: {what} {text!r} is not a number; {_SPEC_HELP}") from None
    return _check_ratio(value, f"scenario {spec!r}: {what}")


def parse_scenario(spec: str) -> Scenario:
    """Parse a scenario string (see ``_SPEC_HELP``); numbers are parsed with int/float, never eval."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"scenario {spec!r} has no kind; {_SPEC_HELP}")
    kind, rest = spec.split(":", 1)
    kind = kind.strip().lower()
    if kind == "indices":
        if not rest.strip():
            raise ValueError(f"scenario {spec!r} names no file; {_SPEC_HELP}")
        return Scenario("indices", path=rest.strip())
    parts = [p.strip() for p in rest.split(":")]
    if kind == "random":
        if len(parts) not in (1, 2):
            raise ValueError(f"scenario {spec!r}: random takes an amount and an optional mode; {_SPEC_HELP}")
        mode = parts[1].lower() if len(parts) == 2 else "stratified"
        if mode not in ("stratified", "uniform"):
            raise ValueError(f"scenario {spec!r}: mode {parts[1]!r} must be 'stratified' or 'uniform'")
        amount = parts[0]
        if any(ch in amount for ch in ".eE"):
            return Scenario(
                "random", ratio=_spec_float(amount, spec, "ratio"), stratified=mode == "stratified"
            )
        count = _spec_int(amount, spec, "count")
        if count < 1:
            raise ValueError(f"scenario {spec!r}: count must be a positive integer; {_SPEC_HELP}")
        return Scenario("random", count=count, stratified=mode == "stratified")
    if kind == "class":
        if len(parts) != 1 or not parts[0]:
            raise ValueError(f"scenario {spec!r}: class takes a comma-separated class list; {_SPEC_HELP}")
        return Scenario(
            "class", classes=tuple(_spec_int(c.strip(), spec, "class") for c in parts[0].split(","))
        )
    if kind == "subclass":
        if len(parts) != 2:
            raise ValueError(f"scenario {spec!r}: subclass takes a class and a ratio; {_SPEC_HELP}")
        return Scenario(
            "subclass",
            classes=(_spec_int(parts[0], spec, "class"),),
            ratio=_spec_float(parts[1], spec, "ratio"),
        )
    raise ValueError(f"scenario {spec!r}: unknown kind {kind!r}; {_SPEC_HELP}")


def read_indices(path: str | Path) -> torch.Tensor:
    """Read one integer index per line (blank lines and ``#`` comments ignored); never evaluates."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"indices file {str(file)!r} does not exist; write one index per line")
    values = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            values.append(int(text))
        except ValueError:
            raise ValueError(
                f"{file}:{number}: {line.strip()!r} is not an integer index; write one index per line"
            ) from None
    return torch.tensor(values, dtype=torch.int64)


def make_split(
    spec: str | Scenario,
    train_labels: IntArray,
    test_labels: IntArray | None = None,
    seed: int = 0,
) -> Split:
    """The :class:`Split` of a scenario string (``"random:0.1"``, ``"class:3"``...) or a :class:`Scenario`."""
    scenario = spec if isinstance(spec, Scenario) else parse_scenario(spec)
    return scenario.split(train_labels, test_labels, seed)
