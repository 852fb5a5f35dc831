"""SCRUB: max-steps away from the teacher on the forget split, min-steps toward it on the retain split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from funlearn.methods._defaults import check_temperature, resolve_tx
from funlearn.methods.base import Method, Objective, gradient_method
from funlearn.methods.objectives import negate, teacher_kl, weighted_sum
from funlearn.methods.reference import frozen_copy
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.transforms.base import GradientTransformation
from funlearn.transforms.optim import adam

__all__ = ["ScrubState", "scrub"]


class ScrubState(NamedTuple):
    """The shared optimizer state, the step count (0-d int64 on the CPU) and the frozen teacher."""

    opt: Any
    count: Tensor
    teacher_params: Params
    teacher_buffers: Buffers


def scrub(
    model: FunctionalModel,
    steps_per_epoch: int,
    tx: GradientTransformation | None = None,
    *,
    msteps: int = 3,
    temperature: float = 2.0,
    retain_ce_weight: float = 1.0,
    retain_kl_weight: float = 0.5,
    forget_weight: float = 1.0,
    forget_ceiling: float | None = None,
    label_smoothing: float = 0.0,
    teacher: tuple[Params, Buffers] | None = None,
    step_rule: Callable[[Objective, GradientTransformation], Method] = gradient_method,
) -> Method:
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023), with its max/min alternation.

    The teacher ``t`` is the model given to ``init`` (or ``teacher=(params, buffers)``), frozen, in
    eval mode. Each step, with ``e = step // steps_per_epoch`` the 0-based epoch:

    1. if ``e < msteps``, a **max-step** on the forget batch:
       ``L_max = -λ_f min(KL_T(t(x_f) || f_θ(x_f)), forget_ceiling)``, one optimizer update;
    2. always a **min-step** on the retain batch:
       ``L_min = γ CE(f_θ(x_r), y_r) + α KL_T(t(x_r) || f_θ(x_r))``, one more update from where the
       max-step left the weights (one student forward for both terms),

    with ``KL_T = T² KL(softmax(·/T) || softmax(·/T))`` (batch mean) and one optimizer (``tx``) shared
    by both kinds of step, as in the reference notebooks. So the first ``msteps`` epochs alternate
    max and min, the later epochs only descend. Forwards: student and teacher on forget (max-steps),
    then student and teacher on retain. Metric ``"max_step"`` is 1 when the step made a max-step.

    ``step_rule(objective, tx)`` makes each update (default :func:`gradient_method`; e.g. a
    perturb-then-descend step for SAM/UAM).

    Defaults (the reference's small-scale notebook): ``msteps = 3``, ``T = 2``, ``γ = 1``, ``α = 0.5``,
    ``λ_f = 1``, no ceiling, ``tx = adam(5e-4, weight_decay=5e-4)`` (10 epochs).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive number of steps, got {steps_per_epoch}")
    if msteps < 0:
        raise ValueError(f"msteps must be >= 0 (epochs with max-steps), got {msteps}")
    check_temperature(temperature)
    tx = resolve_tx(tx, adam(5e-4, weight_decay=5e-4))
    max_step_count = msteps * steps_per_epoch

    def init(params: Params, buffers: Buffers) -> ScrubState:
        teacher_params, teacher_buffers = frozen_copy(*(teacher if teacher is not None else (params, buffers)))
        return ScrubState(tx.init(params), torch.zeros((), dtype=torch.int64), teacher_params, teacher_buffers)

    def step(params, buffers, state, batch, key):
        t_params, t_buffers = state.teacher_params, state.teacher_buffers
        opt, metrics = state.opt, {}
        is_max_step = forget_weight != 0 and int(state.count) < max_step_count
        if is_max_step:
            forget_kl = teacher_kl(model, t_params, t_buffers, "forget", temperature=temperature)
            maximise = weighted_sum((forget_weight, negate(forget_kl, ceiling=forget_ceiling)))
            params, buffers, opt, max_metrics = step_rule(maximise, tx).step(params, buffers, opt, batch, key)
            metrics = {"max_loss": max_metrics.pop("loss"), **max_metrics}
        minimise = teacher_kl(
            model, t_params, t_buffers, "retain", temperature=temperature, kl_weight=retain_kl_weight,
            ce_weight=retain_ce_weight, label_smoothing=label_smoothing,
        )  # fmt: skip
        params, buffers, opt, min_metrics = step_rule(minimise, tx).step(params, buffers, opt, batch, key)
        metrics.update(min_metrics)
        metrics["max_step"] = torch.tensor(float(is_max_step))
        return params, buffers, ScrubState(opt, state.count + 1, t_params, t_buffers), metrics

    return Method(init, step)
