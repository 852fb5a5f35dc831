"""torchunlearn's trainers as compositions of funlearn's objectives and transformations.

Each class keeps torchunlearn's constructor and hyperparameter meanings; the defects of methods.md
Sec. 2 are fixed (listed per class). Every objective runs **separate train-mode forwards** per split
(torchunlearn concatenated forget and retain in one forward for NegGrad, RandomLabel and UAM's
ascent, pooling their BatchNorm statistics).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from funlearn.compat.data import MergedLoaders, eval_view
from funlearn.compat.robmodel import RobModel
from funlearn.compat.trainer import StepRule, Trainer
from funlearn.methods.base import Method, Objective
from funlearn.methods.neggrad import DEFAULT_CEILING
from funlearn.methods.objectives import forget_ce, negate, retain_ce, teacher_kl, weighted_sum
from funlearn.methods.random_label import random_label_objective
from funlearn.methods.relabel import best_wrong_class, fgsm_relabel
from funlearn.methods.salun import SaliencyMode, saliency_mask
from funlearn.methods.scrub import scrub
from funlearn.model import Buffers, Params, random_init
from funlearn.transforms.base import GradientTransformation, mask_updates
from funlearn.transforms.unlearning import add_l1_subgradient

__all__ = [
    "Finetune",
    "NegGrad",
    "RandomLabel",
    "L1Sparse",
    "Standard",
    "SCRUB",
    "BadTeacher",
    "BoundaryShrink",
    "SalUn",
]


def _weight(value: float, name: str, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (upper is not None and value > upper):
        bound = f"in [0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


class Finetune(Trainer):
    """``L = mean_R CE(f(x_r), y_r)``: keep training on the retained data. Accepts a plain Retain loader."""

    reads = ("retain",)

    def objective(self) -> Objective:
        return retain_ce(self.rmodel.fmodel)


class Standard(Finetune):
    """Plain cross-entropy on ``(x, y)`` batches (a plain loader) or on the Retain split of merged
    batches; torchunlearn's host for the UAM minimizer (``Standard`` + ``"UAM(...)"``), which it
    could not feed merged batches without a minimizer (defect noted in methods.md 1.5)."""


class _L1Mixin:
    """``l1_penalty_lambda * sign(θ)`` added to the gradient before clipping and the optimizer."""

    l1: float

    def pre_transforms(self) -> list[GradientTransformation]:
        return [add_l1_subgradient(self.l1)] if self.l1 else []


class NegGrad(_L1Mixin, Trainer):
    """``L = (1-λ_r) (-min(CE_F, ceiling)) + λ_r CE_R + λ_1 ||θ||_1``.

    ``retain_lambda`` (λ_r in [0, 1]; the retain term is dropped at 0, as in torchunlearn),
    ``l1_penalty_lambda`` (λ_1, as an L1 subgradient; skipped at 0, T3). ``ceiling`` (default 5,
    funlearn's :data:`~funlearn.methods.neggrad.DEFAULT_CEILING`; None: torchunlearn's unbounded
    ascent, which collapses models to chance, T2) stops the ascent while the forget loss is above it.
    """

    def __init__(self, rmodel: RobModel, retain_lambda: float = 0.0, l1_penalty_lambda: float = 0.0,
                 *, ceiling: float | None = DEFAULT_CEILING, device: Any = None) -> None:  # fmt: skip
        super().__init__(rmodel, device)
        self.retain_lambda = _weight(retain_lambda, "retain_lambda", upper=1.0)
        self.l1 = _weight(l1_penalty_lambda, "l1_penalty_lambda")
        self.ceiling = ceiling

    def objective(self) -> Objective:
        model = self.rmodel.fmodel
        return weighted_sum((1.0 - self.retain_lambda, negate(forget_ce(model), ceiling=self.ceiling)),
                            (self.retain_lambda, retain_ce(model)))  # fmt: skip


class RandomLabel(_L1Mixin, Trainer):
    """``L = (1-λ_r) CE(f(x_f), ỹ) + λ_r CE_R + λ_1 ||θ||_1`` with ``ỹ ~ Uniform{0..C-1}`` drawn every
    step from the step's key (torchunlearn: the device's global RNG)."""

    def __init__(self, rmodel: RobModel, retain_lambda: float = 0.0, l1_penalty_lambda: float = 0.0,
                 *, device: Any = None) -> None:  # fmt: skip
        super().__init__(rmodel, device)
        self.retain_lambda = _weight(retain_lambda, "retain_lambda", upper=1.0)
        self.l1 = _weight(l1_penalty_lambda, "l1_penalty_lambda")

    def objective(self) -> Objective:
        return random_label_objective(self.rmodel.fmodel, self.rmodel.n_classes,
                                      retain_weight=self.retain_lambda, forget_weight=1.0 - self.retain_lambda)  # fmt: skip


class L1Sparse(_L1Mixin, Finetune):
    """``L = mean_R CE + γ ||θ||_1`` with a constant ``gamma`` (γ), as torchunlearn (a subgradient; for
    the paper's decaying, proximal version use :func:`funlearn.l1_sparse`)."""

    def __init__(self, rmodel: RobModel, gamma: float = 1e-5, *, device: Any = None) -> None:
        super().__init__(rmodel, device)
        self.l1 = _weight(gamma, "gamma")


class SCRUB(Trainer):
    """SCRUB with its max/min alternation (:func:`funlearn.scrub`): during the first ``msteps`` epochs
    each step ascends ``λ_f KL_T(teacher(x_f) || f(x_f))`` then descends
    ``λ_r (CE_ls(f(x_r), y_r) + KL_T(teacher(x_r) || f(x_r)))``; later epochs only descend.

    torchunlearn ignored ``msteps`` and descended one combined loss with an unbounded ``-KL_F`` (T1),
    which collapsed models. ``sgda_smoothing`` is the label smoothing of the retain CE, ``temperature``
    (default 1, as torchunlearn) the KL temperature. The teacher is the model at the start of ``fit``.
    Under SAM/UAM both kinds of step are perturbed, so ρ's schedule counts two updates per step
    during the max epochs.
    """

    def __init__(self, rmodel: RobModel, retain_lambda: float = 1.0, forget_lambda: float = 1.0,
                 sgda_smoothing: float = 0.0, msteps: int = 1, *, temperature: float = 1.0,
                 device: Any = None) -> None:  # fmt: skip
        super().__init__(rmodel, device)
        self.retain_lambda = _weight(retain_lambda, "retain_lambda")
        self.forget_lambda = _weight(forget_lambda, "forget_lambda")
        self.sgda_smoothing = _weight(sgda_smoothing, "sgda_smoothing", upper=1.0)
        if isinstance(msteps, bool) or not isinstance(msteps, int) or msteps < 0:
            raise ValueError(f"msteps must be an int >= 0 (epochs with max-steps), got {msteps!r}")
        self.msteps, self.temperature = msteps, temperature

    def build_method(self, tx: GradientTransformation, step_rule: StepRule, steps_per_epoch: int) -> Method:
        return scrub(self.rmodel.fmodel, steps_per_epoch, tx, msteps=self.msteps, temperature=self.temperature,
                     retain_ce_weight=self.retain_lambda, retain_kl_weight=self.retain_lambda,
                     forget_weight=self.forget_lambda, label_smoothing=self.sgda_smoothing, step_rule=step_rule)  # fmt: skip


class BadTeacher(Trainer):
    """``L = λ_r KL_T(CT(x_r) || f(x_r)) + λ_f KL_T(BT(x_f) || f(x_f))`` (labels unused).

    CT, the competent teacher, is the model at the start of ``fit``; BT is the same architecture
    freshly initialised from ``seed`` (:func:`funlearn.random_init`; torchunlearn used the unseeded
    global RNG, T6). Both are frozen and run in eval mode.
    """

    def __init__(self, rmodel: RobModel, retain_lambda: float = 1.0, forget_lambda: float = 1.0,
                 temperature: float = 1.0, *, seed: int = 0, device: Any = None) -> None:  # fmt: skip
        super().__init__(rmodel, device)
        self.retain_lambda = _weight(retain_lambda, "retain_lambda")
        self.forget_lambda = _weight(forget_lambda, "forget_lambda")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature, self.seed = temperature, seed

    def references(self, params: Params, buffers: Buffers) -> tuple[tuple[Params, Buffers], ...]:
        return (params, buffers), random_init(self.rmodel.fmodel, self.seed, device=self.device)

    def objective(self, competent: tuple[Params, Buffers], incompetent: tuple[Params, Buffers]) -> Objective:
        model, temperature = self.rmodel.fmodel, self.temperature
        return weighted_sum((self.retain_lambda, teacher_kl(model, *competent, "retain", temperature=temperature)),
                            (self.forget_lambda, teacher_kl(model, *incompetent, "forget", temperature=temperature)))  # fmt: skip


class BoundaryShrink(Trainer):
    """``L = λ_f mean_F CE(f(x_f), ỹ) + λ_r mean_R CE(f(x_r), y_r)`` with ``ỹ`` the nearest wrong class.

    ``labels="fgsm"`` (default, Chen et al. 2023): ``ỹ`` is the original model's (frozen at the start
    of ``fit``) best wrong class at the FGSM point ``clip(x + eps sign(∇_x CE), 0, 1)`` in pixel space;
    torchunlearn used the current model's runner-up class on the clean input, with no attack (T5),
    which is ``labels="runner_up"``. ``omit_label`` is accepted for compatibility: the true label is
    always excluded, and for class-wise forgetting it is ``omit_label``.
    """

    def __init__(self, rmodel: RobModel, omit_label: int | None = None, retain_lambda: float = 1.0,
                 forget_lambda: float = 1.0, *, eps: float = 0.1, labels: Literal["fgsm", "runner_up"] = "fgsm",
                 device: Any = None) -> None:  # fmt: skip
        super().__init__(rmodel, device)
        if omit_label is not None and (isinstance(omit_label, bool) or not isinstance(omit_label, int)):
            raise ValueError(f"omit_label must be an int class id or None, got {omit_label!r}")
        if labels not in ("fgsm", "runner_up"):
            raise ValueError(f"labels must be 'fgsm' or 'runner_up', got {labels!r}")
        if labels == "fgsm" and not eps > 0:
            raise ValueError(f"eps must be positive (the FGSM step in pixel space), got {eps!r}")
        self.omit_label = omit_label
        self.retain_lambda = _weight(retain_lambda, "retain_lambda")
        self.forget_lambda = _weight(forget_lambda, "forget_lambda")
        self.eps, self.labels = eps, labels

    def references(self, params: Params, buffers: Buffers) -> tuple[tuple[Params, Buffers], ...]:
        return ((params, buffers),) if self.labels == "fgsm" else ()

    def objective(self, *original: tuple[Params, Buffers]) -> Objective:
        model = self.rmodel.fmodel
        if self.labels == "fgsm":
            shrink = forget_ce(model, relabel=fgsm_relabel(model, *original[0], self.eps, clip=(0.0, 1.0)))
        else:
            shrink = forget_ce(model, logit_relabel=best_wrong_class)
        return weighted_sum((self.forget_lambda, shrink), (self.retain_lambda, retain_ce(model)))


class SalUn(Trainer):
    """RandomLabel on the salient weights: ``L = λ_r CE_R + λ_f CE(f(x_f), ỹ)``, ``ỹ`` uniform, with a mask.

    ``compute_saliency_mask(forget_loader)`` keeps exactly ``int(saliency_threshold * N)`` weights by
    rank of ``abs(Σ_b ∇ CE_F)`` (Fan et al.'s reference; ``mode="batch_abs_mean"``: torchunlearn's
    ``mean_b abs(∇ CE_b)``); ``fit`` computes it from the Forget loader (unshuffled, unaugmented) if
    it was not called. ``enforce_frozen=True``: the mask is the last transformation, so weight decay and
    momentum never move a frozen weight; ``False``: it masks the gradient only (they still move, as
    torchunlearn's plain step). The mask also applies under SAM/UAM (torchunlearn dropped it, T7).
    """

    def __init__(self, rmodel: RobModel, saliency_threshold: float = 0.5, retain_lambda: float = 1.0,
                 forget_lambda: float = 1.0, enforce_frozen: bool = True, *, mode: SaliencyMode = "abs_sum",
                 device: Any = None) -> None:  # fmt: skip
        super().__init__(rmodel, device)
        if not 0.0 < saliency_threshold <= 1.0:
            raise ValueError(f"saliency_threshold must be in (0, 1] (the fraction of weights kept), got {saliency_threshold!r}")
        self.saliency_threshold, self.mode = saliency_threshold, mode
        self.retain_lambda = _weight(retain_lambda, "retain_lambda")
        self.forget_lambda = _weight(forget_lambda, "forget_lambda")
        self.enforce_frozen = bool(enforce_frozen)
        self.mask: dict | None = None

    def compute_saliency_mask(self, forget_loader: Iterable) -> dict:
        """The boolean mask (True: trainable) of the current model on ``forget_loader``'s batches."""
        r = self.rmodel
        self.mask = saliency_mask(r.fmodel, r.params, r.buffers, forget_loader, fraction=self.saliency_threshold,
                                  mode=self.mode)  # fmt: skip
        return self.mask

    def prepare(self, train_loaders: Any) -> None:
        if self.mask is None:
            loaders = train_loaders.loaders if isinstance(train_loaders, MergedLoaders) else train_loaders
            self.compute_saliency_mask(eval_view(loaders["Forget"]))

    def objective(self) -> Objective:
        return random_label_objective(self.rmodel.fmodel, self.rmodel.n_classes,
                                      retain_weight=self.retain_lambda, forget_weight=self.forget_lambda)  # fmt: skip

    def pre_transforms(self) -> list[GradientTransformation]:
        return [] if self.enforce_frozen else [mask_updates(self.mask)]

    def post_transforms(self) -> list[GradientTransformation]:
        return [mask_updates(self.mask)] if self.enforce_frozen else []
