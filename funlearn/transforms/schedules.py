"""Schedules: pure functions of the step count ``t`` (an int or a 0-d tensor) to a value.

Every schedule returns a 0-d float32 tensor on the device of ``t`` (CPU for an int), built from
torch ops only, so it runs inside ``torch.compile``d steps without a host sync. Schedules that
decay are clamped at their end: after ``decay_steps`` the value stays at its final value and never
rises again (torchunlearn's cosine rho schedule was periodic).

>>> import torch
>>> s = cosine_schedule(1.0, decay_steps=4)
>>> [round(float(s(t)), 3) for t in range(6)]
[1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
from torch import Tensor

__all__ = [
    "Schedule",
    "constant_schedule",
    "cosine_schedule",
    "linear_schedule",
    "multistep_schedule",
    "step_schedule",
    "exponential_schedule",
    "as_schedule",
]

Schedule = Callable[[Tensor | int], Tensor]


def _t(step: Tensor | int) -> Tensor:
    if isinstance(step, Tensor):
        return step.to(torch.float32)
    return torch.tensor(float(step), dtype=torch.float32)


def _check_positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of steps, got {value}")


def constant_schedule(value: float) -> Schedule:
    """``v(t) = value``."""

    def schedule(step: Tensor | int) -> Tensor:
        return torch.full_like(_t(step), value)

    return schedule


def cosine_schedule(
    init_value: float,
    decay_steps: int,
    *,
    end_value: float = 0.0,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> Schedule:
    """Linear warm-up then cosine decay, clamped at the end.

    For ``t < W`` (``W = warmup_steps``): ``warmup_start + (init_value - warmup_start) t / W``.
    Then with ``s = min(t - W, D) / D`` and ``D = decay_steps - W``:
    ``end_value + (init_value - end_value) (1 + cos(pi s)) / 2``. For ``t >= decay_steps`` the value
    is ``end_value``. With ``W = 0`` and ``end_value = 0`` this is torch's ``CosineAnnealingLR``
    (``T_max = decay_steps``) up to ``T_max``, without its periodic rise afterwards.
    """
    _check_positive("decay_steps", decay_steps)
    if not 0 <= warmup_steps < decay_steps:
        raise ValueError(f"warmup_steps must be in [0, decay_steps={decay_steps}), got {warmup_steps}")
    span = decay_steps - warmup_steps

    def schedule(step: Tensor | int) -> Tensor:
        t = _t(step)
        s = torch.clamp(t - warmup_steps, 0.0, float(span)) / span
        value = end_value + (init_value - end_value) * 0.5 * (1.0 + torch.cos(math.pi * s))
        if warmup_steps:
            warm = warmup_start + (init_value - warmup_start) * t / warmup_steps
            value = torch.where(t < warmup_steps, warm, value)
        return value

    return schedule


def linear_schedule(init_value: float, end_value: float, transition_steps: int, *, begin: int = 0) -> Schedule:
    """``init_value`` until ``begin``, then linear to ``end_value`` over ``transition_steps``, then flat.

    ``v(t) = init + (end - init) * clamp((t - begin) / transition_steps, 0, 1)``. The l1-sparse
    method's decaying coefficient is ``linear_schedule(gamma, 0.0, total_steps)``.
    """
    _check_positive("transition_steps", transition_steps)

    def schedule(step: Tensor | int) -> Tensor:
        frac = torch.clamp((_t(step) - begin) / transition_steps, 0.0, 1.0)
        return init_value + (end_value - init_value) * frac

    return schedule


def multistep_schedule(init_value: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``init_value * gamma ** #{m in milestones : m <= t}`` (torch's ``MultiStepLR``)."""
    if list(milestones) != sorted(milestones):
        raise ValueError(f"milestones must be increasing, got {list(milestones)}")
    bounds = [float(m) for m in milestones]

    def schedule(step: Tensor | int) -> Tensor:
        t = _t(step)
        passed = (t >= torch.tensor(bounds, device=t.device)).sum().to(torch.float32)
        return init_value * torch.pow(torch.tensor(gamma, device=t.device), passed)

    return schedule


def step_schedule(init_value: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``init_value * gamma ** floor(t / step_size)`` (torch's ``StepLR``)."""
    _check_positive("step_size", step_size)

    def schedule(step: Tensor | int) -> Tensor:
        t = _t(step)
        return init_value * torch.pow(torch.tensor(gamma, device=t.device), torch.floor(t / step_size))

    return schedule


def exponential_schedule(
    init_value: float, decay_rate: float, *, transition_steps: int = 1, end_value: float | None = None
) -> Schedule:
    """``init_value * decay_rate ** (t / transition_steps)``, clamped at ``end_value`` if given.

    With ``transition_steps=1`` this is torch's ``ExponentialLR(gamma=decay_rate)``.
    """
    _check_positive("transition_steps", transition_steps)
    if decay_rate <= 0:
        raise ValueError(f"decay_rate must be positive, got {decay_rate}")

    def schedule(step: Tensor | int) -> Tensor:
        t = _t(step)
        value = init_value * torch.pow(torch.tensor(decay_rate, device=t.device), t / transition_steps)
        if end_value is None:
            return value
        bound = torch.tensor(end_value, device=t.device)
        return torch.maximum(value, bound) if decay_rate < 1 else torch.minimum(value, bound)

    return schedule


def as_schedule(value: float | Schedule) -> Schedule:
    """A number becomes :func:`constant_schedule`; a schedule is returned as is."""
    return value if callable(value) else constant_schedule(float(value))
