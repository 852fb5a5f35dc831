"""BadTeacher: distil the competent teacher on retain and an incompetent (random) teacher on forget."""

from __future__ import annotations

from funlearn.methods._defaults import check_temperature, resolve_tx
from funlearn.methods.base import Method
from funlearn.methods.objectives import teacher_kl, weighted_sum
from funlearn.methods.reference import reference_method
from funlearn.model import random_init
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.transforms.base import GradientTransformation
from funlearn.transforms.optim import adam

__all__ = ["bad_teacher"]


def bad_teacher(
    model: FunctionalModel,
    tx: GradientTransformation | None = None,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    retain_weight: float = 1.0,
    forget_weight: float = 1.0,
    bad_teacher_params: tuple[Params, Buffers] | None = None,
    teacher: tuple[Params, Buffers] | None = None,
) -> Method:
    """``L = λ_r KL_T(t(x_r) || f_θ(x_r)) + λ_f KL_T(b(x_f) || f_θ(x_f))`` (labels unused).

    Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023. The competent teacher ``t``
    is the model given to ``init`` (or ``teacher``); the incompetent teacher ``b`` is the same
    architecture freshly initialised from ``seed`` by ``init`` (:func:`random_init`: PyTorch's
    default init, fresh BatchNorm statistics; torchunlearn drew it from the unseeded global RNG) or
    ``bad_teacher_params``. Both are frozen in the state and run in eval mode. Separate train-mode
    student forwards, retain then forget. Defaults: ``T = 1``, ``λ_r = λ_f = 1``, ``tx = adam(1e-4)``
    (the paper: Adam at 1e-4 for one epoch).
    """
    check_temperature(temperature)

    def references(params: Params, buffers: Buffers):
        device = next(iter(params.values())).device
        bad = bad_teacher_params if bad_teacher_params is not None else random_init(model, seed, device=device)
        return (teacher if teacher is not None else (params, buffers)), bad

    def objective(competent: tuple[Params, Buffers], incompetent: tuple[Params, Buffers]):
        return weighted_sum(
            (retain_weight, teacher_kl(model, *competent, "retain", temperature=temperature)),
            (forget_weight, teacher_kl(model, *incompetent, "forget", temperature=temperature)),
        )

    return reference_method(objective, resolve_tx(tx, adam(1e-4)), references)
