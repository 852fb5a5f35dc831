"""torchunlearn's ``setup(optimizer=..., scheduler=..., minimizer=...)`` strings as funlearn parts.

Every string is parsed by :func:`~funlearn.compat.options.parse_option` (``ast``, literals only,
never ``eval``) against the allow-lists below, and its arguments are bound to the signature of the
torch class it names, so a misspelt or unsupported argument is an error naming the accepted ones.

* Optimizers: ``SGD(lr, momentum, dampening, weight_decay, nesterov)``, ``Adam(lr, betas, eps,
  weight_decay, amsgrad)``, ``AdamW(...)``: :func:`funlearn.sgd`, :func:`funlearn.adam`,
  :func:`funlearn.adamw` (the same update rules as ``torch.optim``).
* Schedulers (functions of the step count; ``"Epoch"`` ones are constant within an epoch, as a
  scheduler stepped after each epoch): ``Step(milestones, gamma)`` (torch ``MultiStepLR``, epochs),
  ``Cosine`` (``CosineAnnealingLR(T_max=n_epochs)``, epochs), ``Cyclic(base_lr, max_lr)``
  (``CyclicLR``, triangular, half a run up and half down, per iteration; momentum is not cycled),
  and with an explicit ``scheduler_type`` of ``"Epoch"`` or ``"Iter"``: ``MultiStepLR(milestones,
  gamma)``, ``StepLR(step_size, gamma)``, ``ExponentialLR(gamma)``, ``CosineAnnealingLR(T_max,
  eta_min)`` (clamped after ``T_max``, not periodic).
* Minimizers: ``SAM(rho)`` (perturb and descend the trainer's own loss) and ``UAM(rho,
  cosine_total_step=None, cosine_start_step=0, gamma=1.0, ascent_sample=None, perturb="unlearn")``.
  UAM's ``rho`` is constant, or with ``cosine_total_step`` a cosine from ``cosine_start_step`` to
  ``cosine_total_step`` iterations, clamped at 0 afterwards (torchunlearn's rose again, M2).
  ``perturb="unlearn"`` (default) moves the weights along ``-∇CE_F`` (funlearn's :func:`~funlearn.uam`,
  measured to forget); ``perturb="forget_ce"`` along torchunlearn's ``+∇CE_F``. ``gamma`` has no
  effect, as in torchunlearn (M1); a value other than 1 is warned about.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from funlearn.compat.options import OptionCall, parse_option
from funlearn.transforms.base import GradientTransformation
from funlearn.transforms.optim import adam, adamw, sgd
from funlearn.transforms.schedules import (
    Schedule,
    constant_schedule,
    cosine_schedule,
    exponential_schedule,
    multistep_schedule,
    step_schedule,
)

__all__ = [
    "OptimizerSpec",
    "SchedulerSpec",
    "MinimizerSpec",
    "parse_optimizer",
    "parse_scheduler",
    "parse_minimizer",
    "per_epoch",
    "triangular_schedule",
    "uam_rho_schedule",
]


def _bind(call: OptionCall, signature_of: Callable, text: str, what: str) -> dict[str, Any]:
    """The call's arguments bound to ``signature_of``'s signature, defaults applied."""
    try:
        bound = inspect.signature(signature_of).bind(*call.args, **call.kwargs)
    except TypeError as err:
        accepted = ", ".join(inspect.signature(signature_of).parameters)
        raise ValueError(f"{what} {text!r}: {err}; {call.name} accepts {accepted}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _number(value: Any, name: str, text: str, *, positive: bool = False, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{text!r}: {name} must be a number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{text!r}: {name} must be positive, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{text!r}: {name} must be >= {minimum}, got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------ optimizers
# Signatures of the torch classes (without ``params``); the functions only carry the signature.
def _SGD(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False): ...
def _Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False): ...
def _AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False): ...


_OPTIMIZERS = {"SGD": _SGD, "Adam": _Adam, "AdamW": _AdamW}


@dataclass(frozen=True)
class OptimizerSpec:
    """A parsed optimizer: its ``lr`` and ``build(lr_or_schedule) -> GradientTransformation``."""

    text: str
    lr: float
    build: Callable[[float | Schedule], GradientTransformation]


def parse_optimizer(text: str) -> OptimizerSpec:
    """``"SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)"`` and the like (see the module docstring)."""
    call = parse_option(text, _OPTIMIZERS, what="optimizer")
    a = _bind(call, _OPTIMIZERS[call.name], text, "optimizer")
    lr = _number(a["lr"], "lr", text, positive=True)
    wd = _number(a["weight_decay"], "weight_decay", text, minimum=0.0)
    if call.name == "SGD":
        momentum = _number(a["momentum"], "momentum", text, minimum=0.0)
        dampening = _number(a["dampening"], "dampening", text, minimum=0.0)
        nesterov = bool(a["nesterov"])
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError(f"{text!r}: nesterov needs momentum > 0 and dampening 0 (as torch.optim.SGD)")
        return OptimizerSpec(text, lr, lambda rate: sgd(rate, momentum, nesterov=nesterov, weight_decay=wd,
                                                        dampening=dampening))  # fmt: skip
    betas = a["betas"]
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"{text!r}: betas must be a pair such as (0.9, 0.999), got {betas!r}")
    b1, b2 = (_number(b, "betas", text, minimum=0.0) for b in betas)
    eps, amsgrad = _number(a["eps"], "eps", text, positive=True), bool(a["amsgrad"])
    make = adam if call.name == "Adam" else adamw
    return OptimizerSpec(text, lr, lambda rate: make(rate, b1, b2, eps, weight_decay=wd, amsgrad=amsgrad))


# ------------------------------------------------------------------------------ schedulers
def _Step(milestones, gamma=0.1): ...
def _Cosine(): ...
def _Cyclic(base_lr, max_lr): ...
def _MultiStepLR(milestones, gamma=0.1): ...
def _StepLR(step_size, gamma=0.1): ...
def _ExponentialLR(gamma): ...
def _CosineAnnealingLR(T_max, eta_min=0.0): ...


_SCHEDULERS = {"Step": _Step, "Cosine": _Cosine, "Cyclic": _Cyclic, "MultiStepLR": _MultiStepLR,
               "StepLR": _StepLR, "ExponentialLR": _ExponentialLR, "CosineAnnealingLR": _CosineAnnealingLR}  # fmt: skip
_FIXED_TYPE = {"Step": "Epoch", "Cosine": "Epoch", "Cyclic": "Iter"}


def per_epoch(schedule: Schedule, steps_per_epoch: int) -> Schedule:
    """``t -> schedule(floor(t / steps_per_epoch))``: a scheduler stepped once per epoch."""

    def stepped(step: Tensor | int) -> Tensor:
        t = step if isinstance(step, Tensor) else torch.tensor(step)
        return schedule(torch.div(t, steps_per_epoch, rounding_mode="floor"))

    return stepped


def triangular_schedule(base_lr: float, max_lr: float, step_size_up: float, step_size_down: float) -> Schedule:
    """torch's ``CyclicLR(mode="triangular")``: linear from ``base_lr`` up to ``max_lr`` over
    ``step_size_up`` steps, back down over ``step_size_down``, repeating."""
    total = step_size_up + step_size_down
    ratio = step_size_up / total

    def schedule(step: Tensor | int) -> Tensor:
        t = torch.as_tensor(step, dtype=torch.float64)
        cycle = torch.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        scale = torch.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        return (base_lr + (max_lr - base_lr) * scale).to(torch.float32)

    return schedule


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed scheduler: ``build(lr, steps_per_epoch, n_epochs) -> Schedule`` of the step count."""

    text: str
    scheduler_type: str
    build: Callable[[float, int, int], Schedule]


def parse_scheduler(text: str | None, scheduler_type: str | None = None) -> SchedulerSpec | None:
    """``"Step(milestones=[2, 4], gamma=0.1)"``, ``"Cosine"``, ... (see the module docstring); None: constant lr."""
    if scheduler_type not in (None, "Epoch", "Iter"):
        raise ValueError(f"scheduler_type must be None, 'Epoch' or 'Iter', got {scheduler_type!r}")
    if text is None:
        return None
    call = parse_option(text, _SCHEDULERS, what="scheduler")
    a = _bind(call, _SCHEDULERS[call.name], text, "scheduler")
    fixed = _FIXED_TYPE.get(call.name)
    if fixed is not None and scheduler_type not in (None, fixed):
        raise ValueError(f"scheduler {text!r} steps per {fixed.lower()}; leave scheduler_type None or {fixed!r} "
                         "(for another unit use MultiStepLR/StepLR/ExponentialLR/CosineAnnealingLR)")  # fmt: skip
    if fixed is None and scheduler_type is None:
        raise ValueError(f"scheduler {text!r} needs scheduler_type='Epoch' or 'Iter' (when it steps)")
    kind = fixed or scheduler_type
    gamma = _number(a["gamma"], "gamma", text, positive=True) if "gamma" in a else None
    if "milestones" in a:
        milestones = a["milestones"]
        if not isinstance(milestones, (list, tuple)) or not all(isinstance(m, int) and m > 0 for m in milestones):
            raise ValueError(f"{text!r}: milestones must be a list of positive ints, got {milestones!r}")

    def unit(schedule: Schedule, steps_per_epoch: int) -> Schedule:
        return per_epoch(schedule, steps_per_epoch) if kind == "Epoch" else schedule

    if call.name in ("Step", "MultiStepLR"):
        build = lambda lr, n, e: unit(multistep_schedule(lr, list(milestones), gamma), n)
    elif call.name == "Cosine":
        build = lambda lr, n, e: unit(cosine_schedule(lr, e), n)
    elif call.name == "Cyclic":
        low, high = _number(a["base_lr"], "base_lr", text, minimum=0.0), _number(a["max_lr"], "max_lr", text, positive=True)
        build = lambda lr, n, e: triangular_schedule(low, high, n * e / 2, n * e / 2)
    elif call.name == "StepLR":
        size = a["step_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{text!r}: step_size must be a positive int, got {size!r}")
        build = lambda lr, n, e: unit(step_schedule(lr, size, gamma), n)
    elif call.name == "ExponentialLR":
        build = lambda lr, n, e: unit(exponential_schedule(lr, gamma), n)
    else:  # CosineAnnealingLR
        t_max = a["T_max"]
        if isinstance(t_max, bool) or not isinstance(t_max, int) or t_max < 1:
            raise ValueError(f"{text!r}: T_max must be a positive int, got {t_max!r}")
        eta_min = _number(a["eta_min"], "eta_min", text, minimum=0.0)
        build = lambda lr, n, e: unit(cosine_schedule(lr, t_max, end_value=eta_min), n)
    return SchedulerSpec(text, kind, build)


# ------------------------------------------------------------------------------ minimizers
def _SAM(rho): ...
def _UAM(rho, cosine_total_step=None, cosine_start_step=0, gamma=1.0, ascent_sample=None, perturb="unlearn"): ...


_MINIMIZERS = {"SAM": _SAM, "UAM": _UAM}


def uam_rho_schedule(rho: float, total_step: int | None = None, start_step: int = 0) -> Schedule:
    """UAM's ρ: constant; or ``ρ`` until ``start_step``, then a cosine to 0 at ``total_step``, then 0."""
    if total_step is None:
        return constant_schedule(rho)
    if total_step <= start_step:
        raise ValueError(f"cosine_total_step={total_step} must exceed cosine_start_step={start_step}")
    cosine = cosine_schedule(rho, total_step - start_step)

    def schedule(step: Tensor | int) -> Tensor:
        t = torch.as_tensor(step, dtype=torch.float32)
        return torch.where(t < start_step, torch.tensor(rho), cosine(torch.clamp(t - start_step, min=0.0)))

    return schedule


@dataclass(frozen=True)
class MinimizerSpec:
    """A parsed minimizer: ``name`` (``"SAM"`` or ``"UAM"``), the ρ schedule of the step count,
    UAM's ``perturb`` direction and ``ascent_sample`` (None: the whole forget batch)."""

    text: str
    name: str
    rho: Schedule
    perturb: str = "unlearn"
    ascent_sample: int | None = None


def parse_minimizer(text: str | None) -> MinimizerSpec | None:
    """``"SAM(rho=0.05)"`` or ``"UAM(rho=0.5, cosine_total_step=100)"`` (see the module docstring)."""
    if text is None:
        return None
    call = parse_option(text, _MINIMIZERS, what="minimizer")
    a = _bind(call, _MINIMIZERS[call.name], text, "minimizer")
    rho = _number(a["rho"], "rho", text, positive=True)
    if call.name == "SAM":
        return MinimizerSpec(text, "SAM", constant_schedule(rho))
    for name in ("cosine_total_step", "cosine_start_step", "ascent_sample"):
        value = a[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{text!r}: {name} must be a non-negative int or None, got {value!r}")
    if a["ascent_sample"] == 0:
        raise ValueError(f"{text!r}: ascent_sample must be positive (or None for the whole forget batch)")
    if a["perturb"] not in ("unlearn", "forget_ce"):
        raise ValueError(f"{text!r}: perturb must be 'unlearn' (along -∇CE_F) or 'forget_ce' (torchunlearn's +∇CE_F)")
    if _number(a["gamma"], "gamma", text) != 1.0:
        warnings.warn(f"{text!r}: UAM's gamma has no effect (as in torchunlearn, where it is stored but never read)",
                      stacklevel=3)  # fmt: skip
    schedule = uam_rho_schedule(rho, a["cosine_total_step"], a["cosine_start_step"] or 0)
    return MinimizerSpec(text, "UAM", schedule, a["perturb"], a["ascent_sample"])

