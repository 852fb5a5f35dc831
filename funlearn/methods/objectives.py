"""Objectives over split batches, and the combinators that build methods from them.

An objective is ``objective(params, buffers, batch, key) -> (loss, (new_buffers, metrics))`` with
``batch = {"forget": (x_f, y_f), "retain": (x_r, y_r)}`` (see :mod:`funlearn.methods.base`). The
terms read one split each and run the model in **train mode** (BatchNorm normalises with batch
statistics and the new running statistics are returned); :func:`weighted_sum` runs its terms as
**separate forwards, in the order given**, threading the buffers through them, so each split is
normalised with its own statistics (torchunlearn's NegGrad/RandomLabel pool both splits in one
concatenated forward; funlearn does not).

- :func:`retain_ce`, :func:`forget_ce`: mean cross-entropy ``(1/B) Σ_i CE(f_θ(x_i), y_i)`` on one
  split, the forget labels optionally replaced by a relabeller (:mod:`funlearn.methods.relabel`)
  before the forward, or derived from the forward's own logits (``logit_relabel``);
- :func:`teacher_kl`: ``T² KL(p_T(teacher(x)) || p_T(f_θ(x)))``, batch mean, to a frozen teacher,
  optionally plus a cross-entropy term on the same forward;
- :func:`negate`: ``-L`` or ``-min(L, ceiling)`` (negate-forget: ascent that stops at the ceiling);
- :func:`weighted_sum`: ``Σ_j w_j L_j``; :func:`on_subset`: an objective on a random sub-batch.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from funlearn.losses import cross_entropy, kl_to_teacher
from funlearn.methods._defaults import check_temperature
from funlearn.methods.base import Batch, Objective
from funlearn.model import Buffers, FunctionalModel, Params

__all__ = [
    "Relabel",
    "LogitRelabel",
    "split_batch",
    "cross_entropy_on",
    "retain_ce",
    "forget_ce",
    "teacher_kl",
    "negate",
    "weighted_sum",
    "on_subset",
]

Relabel = Callable[[Params, Buffers, Tensor, Tensor, torch.Generator], Tensor]
"""``relabel(params, buffers, x, y, key) -> new labels`` (no gradient flows through it)."""

LogitRelabel = Callable[[Tensor, Tensor], Tensor]
"""``logit_relabel(detached_logits, y) -> new labels``, from the logits of the objective's own forward."""


def split_batch(batch: Batch, split: str) -> tuple[Tensor, Tensor]:
    """``batch[split]`` as ``(x, y)``, with a clear error when ``batch`` is not a split batch."""
    if not isinstance(batch, dict) or split not in batch:
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"this objective reads batch[{split!r}] but got {got}; pass a split batch "
            "{'forget': (x, y), 'retain': (x, y)}, e.g. from funlearn.merged_batches"
        )
    x, y = batch[split]
    return x, y


def cross_entropy_on(
    model: FunctionalModel,
    split: str,
    *,
    relabel: Relabel | None = None,
    logit_relabel: LogitRelabel | None = None,
    label_smoothing: float = 0.0,
    train: bool = True,
) -> Objective:
    """``mean_i CE(f_θ(x_i), ỹ_i)`` over ``batch[split]``, ``ỹ = y`` or new labels.

    ``relabel(θ, β, x, y, key)`` makes them before the forward (random labels, an attack);
    ``logit_relabel(z, y)`` makes them from this forward's own logits ``z`` (detached, no second
    forward), e.g. :func:`~funlearn.methods.relabel.best_wrong_class`. The metric is
    ``"<split>_ce"``. ``train`` selects the model's mode (train: BatchNorm batch statistics, new
    running statistics returned).
    """
    if relabel is not None and logit_relabel is not None:
        raise ValueError("give relabel or logit_relabel, not both")

    def objective(params, buffers, batch, key):
        x, y = split_batch(batch, split)
        if relabel is not None:
            with torch.no_grad():
                y = relabel(params, buffers, x, y, key)
        logits, new_buffers = model.apply(params, buffers, x, train=train)
        if logit_relabel is not None:
            y = logit_relabel(logits.detach(), y)
        loss = cross_entropy(logits, y, label_smoothing=label_smoothing)
        return loss, (new_buffers, {f"{split}_ce": loss.detach()})

    return objective


def retain_ce(model: FunctionalModel, *, label_smoothing: float = 0.0, train: bool = True) -> Objective:
    """Mean cross-entropy on the retain split with its true labels (metric ``"retain_ce"``)."""
    return cross_entropy_on(model, "retain", label_smoothing=label_smoothing, train=train)


def forget_ce(
    model: FunctionalModel,
    *,
    relabel: Relabel | None = None,
    logit_relabel: LogitRelabel | None = None,
    train: bool = True,
) -> Objective:
    """Mean cross-entropy on the forget split (metric ``"forget_ce"``), labels as in :func:`cross_entropy_on`.

    Descend it with random labels (:func:`~funlearn.methods.relabel.uniform_relabel`: RandomLabel,
    SalUn) or nearest wrong labels (BoundaryShrink), or ascend it with :func:`negate` (NegGrad).
    """
    return cross_entropy_on(model, "forget", relabel=relabel, logit_relabel=logit_relabel, train=train)


def teacher_kl(
    model: FunctionalModel,
    teacher_params: Params,
    teacher_buffers: Buffers,
    split: str,
    *,
    temperature: float = 1.0,
    kl_weight: float = 1.0,
    ce_weight: float = 0.0,
    label_smoothing: float = 0.0,
    teacher_model: FunctionalModel | None = None,
) -> Objective:
    """``w_kl mean_i T² KL(softmax(t_i/T) || softmax(s_i/T)) + w_ce mean_i CE(s_i, y_i)`` over ``batch[split]``.

    ``s = f_θ(x)`` in train mode, one forward for both terms (SCRUB's min-step); ``t`` are the
    frozen teacher's eval-mode logits (no gradient), from ``teacher_model`` (default: the same
    architecture) at ``teacher_params``/``teacher_buffers``. Metrics ``"<split>_kl"`` and, with
    ``ce_weight``, ``"<split>_ce"`` (the unweighted terms).
    """
    check_temperature(temperature)
    teacher = model if teacher_model is None else teacher_model

    def objective(params, buffers, batch, key):
        x, y = split_batch(batch, split)
        with torch.no_grad():
            teacher_logits = teacher.logits(teacher_params, teacher_buffers, x)
        logits, new_buffers = model.apply(params, buffers, x, train=True)
        kl = kl_to_teacher(logits, teacher_logits, temperature=temperature)
        metrics = {f"{split}_kl": kl.detach()}
        loss = kl_weight * kl
        if ce_weight:
            ce = cross_entropy(logits, y, label_smoothing=label_smoothing)
            metrics[f"{split}_ce"] = ce.detach()
            loss = loss + ce_weight * ce
        return loss, (new_buffers, metrics)

    return objective


def negate(objective: Objective, *, ceiling: float | None = None) -> Objective:
    """Negate-forget: ``-L``, or ``-min(L, ceiling)`` so that ascent stops once ``L`` passes the ceiling.

    With a ceiling the term's gradient is exactly zero while the batch loss ``L`` is above it (the
    ceiling bounds the batch mean, e.g. the forget cross-entropy), so gradient ascent cannot run away
    (torchunlearn's NegGrad collapses to chance on every split). The metrics are ``objective``'s.
    """
    if ceiling is not None and ceiling <= 0:
        raise ValueError(f"ceiling must be positive (a loss value), got {ceiling}")

    def negated(params, buffers, batch, key):
        loss, aux = objective(params, buffers, batch, key)
        return -(loss if ceiling is None else torch.clamp(loss, max=ceiling)), aux

    return negated


def weighted_sum(*terms: tuple[float, Objective]) -> Objective:
    """``Σ_j w_j L_j`` for ``terms = ((w_1, L_1), (w_2, L_2), ...)``, evaluated in order.

    Each term runs its own forward with the buffers the previous term returned (BatchNorm running
    statistics are updated by every split in turn). Terms with weight 0 are skipped (no forward).
    Metrics of all terms are merged.
    """
    if not terms:
        raise ValueError("weighted_sum needs at least one (weight, objective) term")
    for i, term in enumerate(terms):
        if not (isinstance(term, tuple) and len(term) == 2 and callable(term[1])):
            raise TypeError(f"term {i} must be a (weight, objective) pair, got {term!r}")
    active = [(float(w), obj) for w, obj in terms if float(w) != 0.0]
    if not active:
        raise ValueError("every weight of weighted_sum is 0; give at least one non-zero weight")

    def objective(params, buffers, batch, key):
        total, metrics = None, {}
        for weight, term in active:
            loss, (buffers, term_metrics) = term(params, buffers, batch, key)
            total = weight * loss if total is None else total + weight * loss
            metrics.update(term_metrics)
        return total, (buffers, metrics)

    return objective


def on_subset(objective: Objective, split: str, size: int) -> Objective:
    """``objective`` on ``size`` samples of ``batch[split]`` drawn without replacement from the key.

    The whole split is used when it has at most ``size`` samples. UAM's ``ascent_sample``.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of samples, got {size}")

    def subset(params, buffers, batch, key):
        x, y = split_batch(batch, split)
        if x.shape[0] > size:
            rows = torch.randperm(x.shape[0], generator=key, device=key.device)[:size].to(x.device)
            batch = {**batch, split: (x.index_select(0, rows), y.index_select(0, rows))}
        return objective(params, buffers, batch, key)

    return subset
