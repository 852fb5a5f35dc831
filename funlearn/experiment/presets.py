"""The one place that knows how to instantiate every unlearning preset from a uniform context.

The command line, the benchmarks and the torchunlearn-compatible layer build methods by name::

    ctx = PresetContext(model, params, buffers, loaders, num_classes=10, steps_per_epoch=len(steps), epochs=2)
    method = build_method("salun", ctx)              # a Method for the engine: fl.run(method, ...)
    result = run_closed_form("fisher_forget", ctx)   # closed-form presets run at once (ClosedFormResult)

A :class:`Preset` records the method's kind (``"training"``: a :class:`~funlearn.Method` run by the
engine; ``"closed_form"``: a one-shot update with its strength chosen on evaluation data), the
literature's default learning rate and the optimizer it uses. ``ctx.learning_rate`` overrides that
learning rate with the same optimizer shape; ``ctx.options`` are extra keyword arguments of the
preset function (e.g. ``{"fraction": 0.3}`` for SalUn, ``{"rho": 0.1}`` for UAM), checked by it.

``ctx.loaders`` are :func:`~funlearn.split_loaders`'s: SalUn reads ``"forget_eval"`` for its
saliency mask; the closed-form presets read ``"retain_eval"`` (gradients and Fisher),
``"forget_eval"`` and ``"test"`` (``"test_retain"`` for class-wise forgetting) as fixed random
subsets for their selection rule.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from funlearn.engine.evaluate import fixed_subset
from funlearn.methods import (
    Method,
    bad_teacher,
    boundary_shrink,
    finetune,
    fisher_forget,
    influence,
    l1_sparse,
    neggrad,
    neggrad_plus,
    random_label,
    salun,
    scrub,
    uam,
)
from funlearn.methods._defaults import literature_sgd
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.random import fold_in
from funlearn.second_order.selection import ClosedFormResult
from funlearn.transforms.optim import adam, sgd

__all__ = [
    "Preset",
    "PresetContext",
    "available_presets",
    "build_method",
    "get_preset",
    "register_preset",
    "run_closed_form",
]

Kind = Literal["training", "closed_form"]

_SELECTION_STREAM = 0x5E1  # folded into the seed of the closed-form presets' evaluation subsets


@dataclass(frozen=True, eq=False)
class PresetContext:
    """Everything a preset may need, the same for every method.

    ``model``, ``params``, ``buffers``: the original (trained) model. ``loaders``: the split's
    loaders (:func:`~funlearn.split_loaders`). ``steps_per_epoch`` and ``epochs``: the run's length
    (``total_steps`` = their product; L1Sparse decays over it, SCRUB counts its max-step epochs in
    it). ``learning_rate``: overrides the preset's default (None keeps it). ``forget_classes``: the
    classes of a class-wise split (() otherwise). ``train_weight_decay``: the original training's
    weight decay (the l2 term of influence removal's objective). ``options``: extra keyword
    arguments of the preset function. ``selection``: the evaluation sets (``"retain"``,
    ``"forget"``, ``"test"``: iterables of ``(x, y)``) on which closed-form presets choose their
    strength; by default fixed random subsets of ``selection_samples`` samples of ``retain_eval``,
    ``forget_eval`` and ``test`` (``test_retain`` under class-wise forgetting).
    """

    model: FunctionalModel
    params: Params
    buffers: Buffers
    loaders: Mapping[str, Iterable]
    num_classes: int
    steps_per_epoch: int = 1
    epochs: int = 1
    learning_rate: float | None = None
    seed: int = 0
    forget_classes: tuple[int, ...] = ()
    train_weight_decay: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)
    selection: Mapping[str, Iterable] | None = None
    selection_samples: int = 1000
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("steps_per_epoch", "epochs", "num_classes", "selection_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int (got {value!r})")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive or None (got {self.learning_rate!r})")
        if not isinstance(self.options, Mapping):
            raise TypeError(f"options must be a dict of keyword arguments (got {type(self.options).__name__})")

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def lr(self, default: float) -> float:
        """The learning rate to use: the override, or the preset's ``default``."""
        return default if self.learning_rate is None else self.learning_rate

    def loader(self, name: str) -> Iterable:
        if name not in self.loaders:
            raise ValueError(f"loaders lack {name!r}; pass the loaders of funlearn.split_loaders (got {sorted(self.loaders)})")
        return self.loaders[name]

    def subset(self, name: str, n: int) -> Iterable:
        """A fixed random subset of ``n`` samples of loader ``name`` (the loader itself if smaller)."""
        return fixed_subset(self.loader(name), n, fold_in(self.seed, _SELECTION_STREAM, zlib.crc32(name.encode())))

    def selection_data(self) -> dict[str, Iterable]:
        """The closed-form presets' evaluation sets: retain, forget and the (kept classes') test set."""
        if self.selection is not None:
            return dict(self.selection)
        test = "test_retain" if self.forget_classes and "test_retain" in self.loaders else "test"
        n = self.selection_samples
        return {"retain": self.subset("retain_eval", n), "forget": self.subset("forget_eval", n), "test": self.subset(test, n)}


@dataclass(frozen=True)
class Preset:
    """A named method: ``make(ctx)`` returns a :class:`~funlearn.Method` (``kind="training"``) or runs
    the method and returns a :class:`~funlearn.ClosedFormResult` (``kind="closed_form"``).

    ``learning_rate``: the literature's default (None: the method has none); ``optimizer``: the
    transformation it is used with; ``reference``: the paper.
    """

    name: str
    kind: Kind
    make: Callable[[PresetContext], Method | ClosedFormResult] = field(repr=False)
    learning_rate: float | None
    optimizer: str
    reference: str


_SGD = "sgd(lr, momentum=0.9, weight_decay=5e-4)"


def _finetune(ctx: PresetContext) -> Method:
    return finetune(ctx.model, literature_sgd(ctx.lr(0.01)), **ctx.options)


def _neggrad(ctx: PresetContext) -> Method:
    return neggrad(ctx.model, literature_sgd(ctx.lr(1e-4)), **ctx.options)


def _neggrad_plus(ctx: PresetContext) -> Method:
    return neggrad_plus(ctx.model, literature_sgd(ctx.lr(0.01)), **ctx.options)


def _random_label(ctx: PresetContext) -> Method:
    return random_label(ctx.model, ctx.num_classes, literature_sgd(ctx.lr(0.01)), **ctx.options)


def _l1_sparse(ctx: PresetContext) -> Method:
    return l1_sparse(ctx.model, ctx.total_steps, learning_rate=ctx.lr(0.01), **ctx.options)


def _uam(ctx: PresetContext) -> Method:
    return uam(ctx.model, literature_sgd(ctx.lr(0.01)), **ctx.options)


def _salun(ctx: PresetContext) -> Method:
    tx = literature_sgd(ctx.lr(0.013))
    return salun(ctx.model, ctx.params, ctx.buffers, ctx.loader("forget_eval"), ctx.num_classes, tx, **ctx.options)


def _scrub(ctx: PresetContext) -> Method:
    return scrub(ctx.model, ctx.steps_per_epoch, adam(ctx.lr(5e-4), weight_decay=5e-4), **ctx.options)


def _bad_teacher(ctx: PresetContext) -> Method:
    return bad_teacher(ctx.model, adam(ctx.lr(1e-4)), **{"seed": ctx.seed, **ctx.options})


def _boundary_shrink(ctx: PresetContext) -> Method:
    return boundary_shrink(ctx.model, sgd(ctx.lr(1e-5), 0.9), **ctx.options)


def _closed_form_options(ctx: PresetContext, samples_option: str, default_samples: int) -> tuple[dict, int]:
    options = dict(ctx.options)
    samples = options.pop(samples_option, default_samples)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"{samples_option} must be a positive int (got {samples!r})")
    return options, samples


def _fisher_forget(ctx: PresetContext) -> ClosedFormResult:
    """The retain Fisher on ``fisher_samples`` (default 1000) random retain samples."""
    options, samples = _closed_form_options(ctx, "fisher_samples", 1000)
    return fisher_forget(
        ctx.model, ctx.params, ctx.buffers, ctx.subset("retain_eval", samples),
        eval_data=ctx.selection_data(), seed=ctx.seed, forget_classes=ctx.forget_classes or None,
        progress=ctx.progress, **options,
    )  # fmt: skip


def _influence(ctx: PresetContext) -> ClosedFormResult:
    """The retain gradient on the whole retain set; the curvature on ``curvature_samples`` (default 1000)."""
    options, samples = _closed_form_options(ctx, "curvature_samples", 1000)
    options.setdefault("l2", ctx.train_weight_decay)
    return influence(
        ctx.model, ctx.params, ctx.buffers, ctx.loader("retain_eval"), eval_data=ctx.selection_data(),
        curvature_data=ctx.subset("retain_eval", samples), forget_classes=ctx.forget_classes or None,
        progress=ctx.progress, **options,
    )  # fmt: skip


_REGISTRY: dict[str, Preset] = {}


def _key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower()) if isinstance(name, str) else ""


def register_preset(preset: Preset, *, overwrite: bool = False) -> None:
    """Add ``preset`` under ``preset.name`` (case-insensitive, ``-`` reads as ``_``)."""
    if not isinstance(preset, Preset):
        raise TypeError(f"preset must be a Preset, got {type(preset).__name__}")
    if preset.kind not in ("training", "closed_form"):
        raise ValueError(f"preset {preset.name!r}: kind must be 'training' or 'closed_form' (got {preset.kind!r})")
    key = _key(preset.name)
    if not key:
        raise ValueError(f"preset name must be a non-empty string (got {preset.name!r})")
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"preset {preset.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[key] = preset


def available_presets(kind: Kind | None = None) -> list[str]:
    """The registered preset names, in registration order (only those of ``kind`` when given)."""
    return [p.name for p in _REGISTRY.values() if kind is None or p.kind == kind]


def get_preset(name: str) -> Preset:
    """The preset named ``name``; an unknown name raises a ValueError listing the valid ones."""
    preset = _REGISTRY.get(_key(name))
    if preset is None:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(available_presets())}")
    return preset


def build_method(name: str, ctx: PresetContext) -> Method:
    """The :class:`~funlearn.Method` of training preset ``name`` for ``ctx`` (run it with ``fl.run``)."""
    preset = get_preset(name)
    if preset.kind != "training":
        raise ValueError(f"{preset.name} is a closed-form method: use run_closed_form({preset.name!r}, ctx)")
    return preset.make(ctx)


def run_closed_form(name: str, ctx: PresetContext) -> ClosedFormResult:
    """Run closed-form preset ``name`` on ``ctx``: the chosen params and every candidate's row."""
    preset = get_preset(name)
    if preset.kind != "closed_form":
        raise ValueError(f"{preset.name} is a training method: use build_method({preset.name!r}, ctx) and fl.run")
    if ctx.learning_rate is not None:
        raise ValueError(f"{preset.name} has no learning rate (got learning_rate={ctx.learning_rate}); pass None")
    return preset.make(ctx)


for _preset in (
    Preset("finetune", "training", _finetune, 0.01, _SGD, "Finetune on the retain set (Jia et al., NeurIPS 2023)"),
    Preset("neggrad", "training", _neggrad, 1e-4, _SGD, "gradient ascent on the forget set (Thudi et al., 2022)"),
    Preset("neggrad_plus", "training", _neggrad_plus, 0.01, _SGD, "NegGrad+ (Kurmanji et al., NeurIPS 2023)"),
    Preset("random_label", "training", _random_label, 0.01, _SGD, "RandomLabel (Golatkar et al., CVPR 2020)"),
    Preset("l1_sparse", "training", _l1_sparse, 0.01, _SGD + " + L1 proximal", "l1-sparse (Jia et al., NeurIPS 2023)"),
    Preset("uam", "training", _uam, 0.01, "perturb_then_descend + " + _SGD, "UAM (Kim et al., NeurIPS 2025)"),
    Preset("salun", "training", _salun, 0.013, _SGD + " + saliency mask", "SalUn (Fan et al., ICLR 2024)"),
    Preset("scrub", "training", _scrub, 5e-4, "adam(lr, weight_decay=5e-4)", "SCRUB (Kurmanji et al., NeurIPS 2023)"),
    Preset("bad_teacher", "training", _bad_teacher, 1e-4, "adam(lr)", "Bad Teaching (Chundawat et al., AAAI 2023)"),
    Preset("boundary_shrink", "training", _boundary_shrink, 1e-5, "sgd(lr, momentum=0.9)",
           "Boundary Shrink (Chen et al., CVPR 2023)"),
    Preset("fisher_forget", "closed_form", _fisher_forget, None, "Fisher noise, alpha chosen on evaluation data",
           "Fisher forgetting (Golatkar et al., CVPR 2020)"),
    Preset("influence", "closed_form", _influence, None, "damped Newton step, alpha chosen on evaluation data",
           "influence removal (Koh & Liang, 2017; Guo et al., 2020)"),
):
    register_preset(_preset)
