"""torchunlearn's trainer API (``setup``, ``record_rob``, ``fit``) running funlearn's engine.

A compat trainer is an objective over split batches plus a chain of transformations, assembled into
a :class:`funlearn.Method` and run by :func:`funlearn.run`:

    tx = chain([perturb_then_descend(ρ_t)], [pre...], [clip_by_global_norm(c)], optimizer(lr_t), [post...])

``optimizer``, ``lr_t`` and ``ρ_t`` come from the option strings of :meth:`Trainer.setup` (parsed
safely, :mod:`funlearn.compat.optim`); ``pre`` (e.g. the L1 subgradient) and ``post`` (SalUn's
mask) from the trainer. Without a minimizer one step is ``θ + tx(∇L(θ))`` (:func:`funlearn.gradient_method`).
With ``SAM``/``UAM`` it is :func:`funlearn.perturb_descend_method`: the gradient of the trainer's own
loss ``L`` taken at ``θ + ρ_t g/‖g‖`` and applied from ``θ``, with ``g`` the gradient of ``L`` (SAM)
or of the forget loss (UAM). This works for every trainer (torchunlearn's UAM only ran with
``Standard``, M3) and keeps SalUn's mask (T7).

``fit`` evaluates the ``record_rob`` loaders after every epoch (``record_type="Epoch"``) or every
iteration (``"Iter"``) and prints torchunlearn's table (:mod:`funlearn.compat.records`). With
``save_path`` the run directory holds funlearn's files (``last.safetensors``, ``best.safetensors``,
``history.json``/``.csv``) and torchunlearn-style weight files ``init.pth``, ``last.pth`` and
``best.pth`` (``{"rmodel": state_dict, "record_info": {...}}``, tensors and numbers only). After
``fit`` the RobModel holds the last parameters (as in torchunlearn); ``trainer.result`` is the
engine's :class:`funlearn.RunResult` (best parameters, history).
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from funlearn.compat.data import MergedLoaders, check_normalization, eval_view
from funlearn.compat.optim import (
    MinimizerSpec,
    OptimizerSpec,
    SchedulerSpec,
    parse_minimizer,
    parse_optimizer,
    parse_scheduler,
)
from funlearn.compat.records import RecordTable, best_criterion
from funlearn.compat.robmodel import RobModel, write_state
from funlearn.engine.evaluate import fixed_subset
from funlearn.engine.loop import RunResult, run
from funlearn.methods.base import Method, Objective, gradient_method
from funlearn.methods.objectives import forget_ce, negate, on_subset
from funlearn.methods.reference import reference_method
from funlearn.methods.uam import perturb_descend_method
from funlearn.model import Buffers, Params
from funlearn.random import fold_in
from funlearn.transforms.base import GradientTransformation, chain
from funlearn.transforms.optim import clip_by_global_norm
from funlearn.transforms.schedules import Schedule, constant_schedule
from funlearn.transforms.unlearning import perturb_then_descend

__all__ = ["Trainer"]

StepRule = Callable[[Objective, GradientTransformation], Method]
_RECORD_STREAM = 0xC0A  # folded with the flag into the seed of a record_rob subset


class _RetainBatches:
    """A plain ``(x, y)`` loader as funlearn's ``{"retain": (x, y)}`` steps, ``steps`` per epoch."""

    def __init__(self, loader: Iterable, steps: int | None) -> None:
        if not hasattr(loader, "__len__") or len(loader) == 0:
            raise ValueError("train_loaders has no batches (len 0 or no len()); pass a non-empty loader")
        if steps is not None and steps > len(loader):
            raise ValueError(f"n_iters={steps} exceeds the loader's {len(loader)} batches; use MergedLoaders to cycle")
        self.loader, self.steps = loader, steps or len(loader)

    def __len__(self) -> int:
        return self.steps

    def iter_from(self, epoch: int, start: int = 0) -> Iterator[dict[str, Any]]:
        if hasattr(self.loader, "iter_from"):
            batches = self.loader.iter_from(epoch, start)
        else:
            if hasattr(self.loader, "set_epoch"):
                self.loader.set_epoch(epoch)
            batches = itertools.islice(iter(self.loader), start, None)
        return ({"retain": batch} for batch in itertools.islice(batches, self.steps - start))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_from(0)


class Trainer:
    """Base of the compat trainers: ``setup``, ``record_rob``, ``fit`` (see the module docstring).

    Subclasses define the objective (:meth:`objective`), the frozen references it needs
    (:meth:`references`), which splits it reads (``reads``) and extra transformations before and after
    the optimizer (:meth:`pre_transforms`, :meth:`post_transforms`).
    """

    reads: tuple[str, ...] = ("forget", "retain")

    def __init__(self, rmodel: RobModel, device: Any = None) -> None:
        if not isinstance(rmodel, RobModel):
            raise TypeError(f"rmodel must be a funlearn.compat RobModel, got {type(rmodel).__name__}")
        if device is not None:
            rmodel.to(device)
        self.rmodel = rmodel
        self.optimizer: OptimizerSpec | GradientTransformation | None = None
        self.scheduler: SchedulerSpec | None = None
        self.minimizer: MinimizerSpec | None = None
        self.clip_grad_norm: float | None = None
        self.n_epochs: int | None = None
        self.record_loaders: dict[str, Iterable] = {}
        self.result: RunResult | None = None

    @property
    def device(self) -> Any:
        return self.rmodel.device

    # ------------------------------------------------------------------ what a trainer is
    def objective(self, *references: tuple[Params, Buffers]) -> Objective:
        """The loss ``L`` over a split batch (given the frozen references, if any)."""
        raise NotImplementedError

    def references(self, params: Params, buffers: Buffers) -> tuple[tuple[Params, Buffers], ...] | None:
        """Frozen ``(params, buffers)`` models the objective compares with, taken at the start (None: none)."""
        return None

    def pre_transforms(self) -> list[GradientTransformation]:
        """Transformations of the gradient before clipping and the optimizer (e.g. an L1 subgradient)."""
        return []

    def post_transforms(self) -> list[GradientTransformation]:
        """Transformations after the optimizer (e.g. SalUn's mask)."""
        return []

    def prepare(self, train_loaders: Any) -> None:
        """Work before the run that needs the data (e.g. SalUn's saliency mask)."""

    def build_method(self, tx: GradientTransformation, step_rule: StepRule, steps_per_epoch: int) -> Method:
        """The funlearn method: ``step_rule(objective, tx)``, with references frozen at ``init`` if any."""
        if type(self).references is Trainer.references:
            return step_rule(self.objective(), tx)
        return reference_method(self.objective, tx, self.references, step_rule=step_rule)

    # ------------------------------------------------------------------ torchunlearn API
    def setup(
        self,
        optimizer: str | GradientTransformation,
        scheduler: str | None = None,
        scheduler_type: str | None = None,
        n_epochs: int | None = None,
        n_iters: int | None = None,
        minimizer: str | None = None,
        clip_grad_norm: float | None = None,
    ) -> None:
        """Parse the option strings (nothing is built until ``fit`` knows the loader length).

        ``optimizer``: ``"SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)"``, ``"Adam(...)"``,
        ``"AdamW(...)"`` or a funlearn transformation (then no scheduler). ``scheduler``/
        ``scheduler_type``, ``minimizer``: see :mod:`funlearn.compat.optim`. ``n_epochs``: the
        length the epoch schedulers (``Cosine``, ``Cyclic``) span (default: ``fit``'s ``n_epochs``).
        ``n_iters``: accepted for torchunlearn's ``Cyclic``; the loader length is used.
        ``clip_grad_norm``: clip the global gradient norm (also under a minimizer).
        """
        if isinstance(optimizer, GradientTransformation):
            if scheduler is not None:
                raise ValueError("a scheduler needs an optimizer string such as 'SGD(lr=0.1)', not a transformation")
            self.optimizer = optimizer
        else:
            self.optimizer = parse_optimizer(optimizer)
        self.scheduler = parse_scheduler(scheduler, scheduler_type)
        self.minimizer = parse_minimizer(minimizer)
        if n_epochs is not None and (isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1):
            raise ValueError(f"n_epochs must be a positive int or None, got {n_epochs!r}")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive or None, got {clip_grad_norm!r}")
        self.n_epochs, self.clip_grad_norm = n_epochs, clip_grad_norm

    def record_rob(
        self,
        loaders: Mapping[str, Iterable],
        eps: float | None = None,
        alpha: float | None = None,
        steps: int | None = None,
        std: float | None = None,
        record_cosine: bool | None = None,
        n_limit: int | None = None,
        seed: int = 0,
    ) -> None:
        """Record ``Clean<flag>`` (accuracy, %) on each loader, e.g. ``{"(R)": ..., "(F)": ..., "(Te)": ...}``.

        ``n_limit``: evaluate a fixed random subset of ``n_limit`` samples per loader, drawn once
        here from ``seed`` and the flag (torchunlearn took the first batches). Loaders are read in
        index order without augmentation. The adversarial records (``eps``, ``alpha``, ``steps``,
        ``std``, ``record_cosine``) are not supported.
        """
        unsupported = [n for n, v in (("eps", eps), ("alpha", alpha), ("steps", steps), ("std", std),
                                      ("record_cosine", record_cosine)) if v is not None]  # fmt: skip
        if unsupported:
            raise ValueError(f"record_rob: {unsupported} (adversarial/gradient records) are not supported by "
                             "funlearn.compat; record clean accuracies only")  # fmt: skip
        if not isinstance(loaders, Mapping) or not loaders:
            raise ValueError("record_rob needs a dict {flag: loader}, e.g. {'(R)': retain, '(F)': forget, '(Te)': test}")
        self.record_loaders = {}
        for flag, loader in loaders.items():
            if not isinstance(flag, str) or not hasattr(loader, "__iter__"):
                raise ValueError(f"record_rob: {flag!r} must be a string flag mapped to a loader of (x, y) batches")
            view = eval_view(loader)
            if n_limit is not None:
                view = fixed_subset(view, n_limit, fold_in(seed, _RECORD_STREAM, zlib.crc32(flag.encode())))
            self.record_loaders[flag] = view

    def fit(
        self,
        train_loaders: Any,
        n_epochs: int,
        n_iters: int | None = None,
        record_type: str | None = "Epoch",
        save_path: str | os.PathLike | None = None,
        save_type: str | None = "Epoch",
        save_best: Mapping[str, str] | None = None,
        save_overwrite: bool = False,
        refit: bool = False,
        seed: int = 0,
        progress: bool = False,
    ) -> RunResult:
        """Unlearn for ``n_epochs`` epochs on ``train_loaders``, printing the record table.

        ``train_loaders``: a :class:`MergedLoaders`, a dict ``{"Retain", "Forget"}`` (merged here) or,
        for trainers that read only the retain split, a plain ``(x, y)`` loader. An epoch is
        ``n_iters`` steps (default: the longer loader's length). ``record_type``: ``"Epoch"``,
        ``"Iter"`` or None. ``save_path``: the run directory (an existing non-empty one needs
        ``save_overwrite=True``); ``save_type="Epoch"`` also keeps one checkpoint per epoch,
        ``"Iter"`` saves ``last`` every iteration. ``save_best``: torchunlearn's codes
        (:mod:`funlearn.compat.records`), tracked in memory without ``save_path``. ``refit=True``
        resumes the run in ``save_path``. ``seed``: the run's random draws (random labels, UAM's
        ascent sample; the merge order of a dict, while a :class:`MergedLoaders` keeps its own
        seed). ``progress``: a tqdm bar besides the table.
        """
        if self.optimizer is None:
            raise RuntimeError("call setup(optimizer='SGD(lr=0.01, momentum=0.9)', ...) before fit")
        if isinstance(n_epochs, bool) or not isinstance(n_epochs, int) or n_epochs < 1:
            raise ValueError(f"n_epochs must be a positive int, got {n_epochs!r}")
        for name, value in (("record_type", record_type), ("save_type", save_type)):
            if value not in ("Epoch", "Iter", None):
                raise ValueError(f"{name} must be 'Epoch', 'Iter' or None, got {value!r}")
        if save_best is not None and record_type is None:
            raise ValueError("save_best needs records: set record_type='Epoch' or 'Iter'")
        if refit and save_path is None:
            raise ValueError("refit=True resumes the run in save_path; pass save_path")
        criterion = best_criterion(save_best, self.record_loaders) if save_best is not None else None
        check_normalization(self.rmodel, train_loaders)
        batches = self._batches(train_loaders, n_iters, seed)
        steps_per_epoch = len(batches)
        lr_schedule = self._lr_schedule(steps_per_epoch, self.n_epochs or n_epochs)
        self.prepare(train_loaders)
        method = self.build_method(self._transformation(lr_schedule), self._step_rule(), steps_per_epoch)

        table = None
        if record_type is not None:
            table = RecordTable(self.record_loaders, with_iter=record_type == "Iter", steps_per_epoch=steps_per_epoch,
                                lr_at=lambda step: float(lr_schedule(step)) if lr_schedule else float("nan"))  # fmt: skip
        print(f"[{type(self).__name__}] {n_epochs} epochs x {steps_per_epoch} iterations; optimizer: {self._describe()}")
        start = (dict(self.rmodel.params), dict(self.rmodel.buffers))
        result = run(
            method, self.rmodel.params, self.rmodel.buffers, batches, epochs=n_epochs, seed=seed,
            model=self.rmodel.fmodel, eval_loaders=self.record_loaders if record_type else None,
            metrics=[_no_metrics] if record_type and not self.record_loaders else (),
            eval_every="epoch" if record_type == "Epoch" else 1, best=criterion,
            run_dir=save_path, resume=refit, overwrite=save_overwrite and not refit,
            save_every=1 if save_type == "Iter" else "epoch", save_epochs=save_type == "Epoch" and save_path is not None,
            progress=progress, desc=type(self).__name__, on_evaluation=table,
        )  # fmt: skip
        self.rmodel.params, self.rmodel.buffers = result.params, result.buffers
        self.result = result
        if table is not None and table.rows:
            print(table.footer())
        if not result.completed:
            print(result.stop_reason)
        if result.best_record is not None:
            best = table.values(result.best_record)
            print(f"Best: epoch {best['Epoch']}, " + ", ".join(f"{k} {best[k]:.2f}" for k in save_best))
        if save_path is not None:
            self._write_weight_files(save_path, None if refit else start, result, table)
        return result

    # ------------------------------------------------------------------ internals
    def _batches(self, train_loaders: Any, n_iters: int | None, seed: int) -> Any:
        if n_iters is not None and (isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 1):
            raise ValueError(f"n_iters must be a positive int or None, got {n_iters!r}")
        if isinstance(train_loaders, Mapping):
            train_loaders = MergedLoaders(train_loaders, seed=seed)
        if isinstance(train_loaders, MergedLoaders):
            return train_loaders.batches(n_iters)
        needs_forget = "forget" in self.reads or (self.minimizer is not None and self.minimizer.name == "UAM")
        if needs_forget:
            what = "the UAM minimizer" if "forget" not in self.reads else type(self).__name__
            raise ValueError(f"{what} reads the Forget split: pass MergedLoaders(train_loaders) "
                             "(or the dict {'Retain': ..., 'Forget': ...}), not a single loader")  # fmt: skip
        return _RetainBatches(train_loaders, n_iters)

    def _lr_schedule(self, steps_per_epoch: int, n_epochs: int) -> Schedule | None:
        if not isinstance(self.optimizer, OptimizerSpec):
            return None
        if self.scheduler is None:
            return constant_schedule(self.optimizer.lr)
        return self.scheduler.build(self.optimizer.lr, steps_per_epoch, n_epochs)

    def _transformation(self, lr_schedule: Schedule | None) -> GradientTransformation:
        if isinstance(self.optimizer, OptimizerSpec):
            rate = self.optimizer.lr if self.scheduler is None else lr_schedule
            optimizer = self.optimizer.build(rate)
        else:
            optimizer = self.optimizer
        parts = [perturb_then_descend(self.minimizer.rho)] if self.minimizer is not None else []
        parts += self.pre_transforms()
        if self.clip_grad_norm is not None:
            parts.append(clip_by_global_norm(self.clip_grad_norm))
        return chain(*parts, optimizer, *self.post_transforms())

    def _step_rule(self) -> StepRule:
        spec = self.minimizer
        if spec is None:
            return gradient_method
        if spec.name == "SAM":
            return lambda objective, tx: perturb_descend_method(objective, objective, tx)
        perturb = forget_ce(self.rmodel.fmodel)
        if spec.perturb == "unlearn":
            perturb = negate(perturb)
        if spec.ascent_sample is not None:
            perturb = on_subset(perturb, "forget", spec.ascent_sample)
        return lambda objective, tx: perturb_descend_method(perturb, objective, tx)

    def _describe(self) -> str:
        parts = [self.optimizer.text if isinstance(self.optimizer, OptimizerSpec) else repr(self.optimizer)]
        if self.scheduler is not None:
            parts.append(f"scheduler {self.scheduler.text} ({self.scheduler.scheduler_type})")
        if self.minimizer is not None:
            parts.append(f"minimizer {self.minimizer.text}")
        return ", ".join(parts)

    def _write_weight_files(self, save_path: str | os.PathLike, start: tuple[Params, Buffers] | None,
                            result: RunResult, table: RecordTable | None) -> None:  # fmt: skip
        """torchunlearn-style ``init.pth`` (unless resumed), ``last.pth`` and ``best.pth`` next to funlearn's files."""
        directory = os.fspath(save_path)
        last_info = table.rows[-1] if table is not None and table.rows else None
        files = [("last.pth", (result.params, result.buffers), last_info)]
        if start is not None:
            files.append(("init.pth", start, None))
        if result.best_params is not None:
            files.append(("best.pth", (result.best_params, result.best_buffers), table.values(result.best_record)))
        elif os.path.exists(os.path.join(directory, "best.pth")):
            os.remove(os.path.join(directory, "best.pth"))  # a previous run's, overwritten
        for name, (params, buffers), info in files:
            write_state(os.path.join(directory, name), self.rmodel.state_dict(params, buffers), info)


def _no_metrics(params: Params, buffers: Buffers) -> dict[str, float]:
    """Makes the engine record Cost and lr at each record point when no loader is registered."""
    return {}
