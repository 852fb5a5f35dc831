"""The experiment pipeline: a thin composition of the data, engine, methods and evaluation layers.

:func:`compare_methods` does what ``funlearn compare`` and ``funlearn demo`` print:

1. load the dataset and split it by the scenario (:func:`prepare_experiment`);
2. train the original model on all training data (:func:`train_original`), cached on disk by
   dataset, seed and recipe;
3. retrain a reference from scratch on the retain set with the same recipe
   (:func:`train_retrained`, :func:`funlearn.retrained_reference`), cached by dataset, scenario,
   seed and recipe;
4. run each method from the original with the engine (:func:`run_method`): training presets over
   merged forget/retain batches with evaluations on fixed retain/forget/test subsets for the
   curves; closed-form presets at once;
5. evaluate every model against the retrained one (:func:`funlearn.evaluate_unlearning`) and write
   the report (Markdown, CSV, JSON, text) and the plots (curves, trade-off) to an output directory.

**Time.** A method's time is what unlearning costs: building it (e.g. SalUn's saliency pass), its
``init`` and its steps (a closed-form method: the whole call, its candidate search included). The
evaluations made for the curves and the data loading between steps are not counted; the
retrained reference's time is its training run (no evaluations). On CUDA the clock synchronises.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from funlearn.data.bundle import DatasetBundle, load_dataset
from funlearn.data.loaders import TensorLoader, split_loaders
from funlearn.data.merged import merged_batches
from funlearn.data.scenarios import Split, make_split
from funlearn.engine.compile import compile_step
from funlearn.engine.loop import run
from funlearn.engine.records import History
from funlearn.engine.supervised import train
from funlearn.evaluation.evaluate import (
    EvaluationConfig,
    RetrainBaseline,
    UnlearningEvaluation,
    evaluate_unlearning,
    retrain_baseline,
)
from funlearn.evaluation.plots import plot_curves, plot_tradeoff
from funlearn.evaluation.predictions import collect_predictions, predict_split
from funlearn.evaluation.report import Report, make_report
from funlearn.evaluation.retrain import RetrainedModel, retrained_reference
from funlearn.experiment.config import ConfigError, ExperimentConfig
from funlearn.experiment.presets import (
    PresetContext,
    build_method,
    get_preset,
    run_closed_form,
)
from funlearn.io import load_params, load_tensors, save_params
from funlearn.methods.base import Method
from funlearn.model import Buffers, FunctionalModel, Params, functional, random_init
from funlearn.models.registry import create_model
from funlearn.random import fold_in

__all__ = [
    "CONSOLE_COLUMNS",
    "Comparison",
    "Experiment",
    "MethodRun",
    "compare_methods",
    "console_table",
    "evaluate_models",
    "load_model_file",
    "prepare_experiment",
    "read_experiment_fields",
    "resolve_device",
    "run_method",
    "save_model_file",
    "train_original",
    "train_retrained",
    "write_comparison",
]

CONSOLE_COLUMNS: tuple[str, ...] = (
    "retain_acc",
    "forget_acc",
    "test_acc",
    "test_forget_acc",
    "mia_efficacy",
    "avg_gap",
    "time_s",
    "time_fraction",
)
"""The columns printed on the console; the saved report has every metric."""

_ORIGINAL_SCENARIO = "original: all training data"
# streams folded into the run seed, so that the data orders of the runs are independent
_ORIGINAL_STREAM, _RETRAIN_STREAM, _MERGE_STREAM, _ZRF_STREAM = 0x0516, 0x0517, 0x0518, 0x0519


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; any other name must be usable here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device; valid: auto, cpu, cuda, cuda:N, mps") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here; use --device cpu (or auto)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here; use --device cpu (or auto)")
    return resolved


@dataclass(eq=False)
class Experiment:
    """A prepared experiment: the data on the device, the split, its loaders and the untrained model."""

    config: ExperimentConfig
    bundle: DatasetBundle
    split: Split
    loaders: dict[str, TensorLoader]
    model: FunctionalModel
    init_params: Params
    init_buffers: Buffers
    device: torch.device

    @property
    def forget_classes(self) -> tuple[int, ...]:
        return tuple(self.split.forget_classes or ())

    @property
    def title(self) -> str:
        return f"{self.config.dataset}, {self.config.model}: {self.config.scenario} ({self.split.description})"

    def curve_loaders(self) -> dict[str, TensorLoader]:
        """The loaders evaluated during runs: ``retain``, ``forget`` and ``test`` (the kept classes'
        test samples under class-wise forgetting, as in the report), plus ``test_forget``."""
        loaders = {"retain": self.loaders["retain_eval"], "forget": self.loaders["forget_eval"]}
        if "test_retain" in self.loaders:
            loaders.update(test=self.loaders["test_retain"], test_forget=self.loaders["test_forget"])
        else:
            loaders["test"] = self.loaders["test"]
        return loaders


@contextlib.contextmanager
def _blame(field: str) -> Iterator[None]:
    """Re-raise a ValueError, FileNotFoundError or TypeError as a :class:`ConfigError` naming ``field``."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError, TypeError) as err:
        raise ConfigError(field, str(err)) from err


def prepare_experiment(config: ExperimentConfig) -> Experiment:
    """Load the dataset onto the device, make the split and its loaders, and build the model.

    Raises :class:`~funlearn.ConfigError` naming the field (``device``, ``dataset``, ``scenario``,
    ``batch_size``, ``model``) whose value cannot work, before any training.
    """
    with _blame("device"):
        device = resolve_device(config.device)
    with _blame("dataset"):
        bundle = load_dataset(config.dataset, config.data_root, download=config.download, device=device)
    with _blame("scenario"):
        split = make_split(config.scenario, bundle.train_y, bundle.test_y, seed=config.seed)
    with _blame("batch_size"):
        loaders = split_loaders(bundle, split, config.unlearning.batch_size, seed=config.seed, eval_batch_size=512)
    with _blame("model"):
        net = create_model(
            config.model, num_classes=bundle.num_classes, in_channels=bundle.channels,
            image_size=bundle.image_size, seed=config.seed, **config.model_kwargs,
        )  # fmt: skip
    model, params, buffers = functional(net.to(device), mean=bundle.mean, std=bundle.std)
    return Experiment(config, bundle, split, loaders, model, params, buffers, device)


def _train_from_scratch(exp: Experiment, indices: torch.Tensor | None, stream: int, desc: str):
    """A ``train_fn`` for the cache: the recipe from the untrained model on ``indices`` (all if None)."""
    cfg, bundle = exp.config, exp.bundle

    def train_fn() -> tuple[Params, Buffers]:
        loader = TensorLoader(
            bundle.train_x, bundle.train_y, cfg.training.batch_size, indices=indices,
            augment="crop_flip" if bundle.augment else None, seed=fold_in(cfg.seed, stream),
        )  # fmt: skip
        result = train(
            exp.model, exp.init_params, exp.init_buffers, loader, epochs=cfg.training.epochs,
            optimizer=cfg.training.transformation(len(loader)), seed=cfg.seed, progress=cfg.progress,
            desc=desc, compile=cfg.compile,
        )  # fmt: skip
        if not result.completed:
            raise RuntimeError(f"training the {desc} model did not complete: {result.stop_reason}")
        return result.params, result.buffers

    return train_fn


def _key_fields(exp: Experiment, scenario: str | Split) -> dict[str, Any]:
    cfg = exp.config
    return {"dataset": cfg.dataset, "scenario": scenario, "seed": cfg.seed, "recipe": cfg.recipe()}


def train_original(exp: Experiment, *, refresh: bool = False) -> RetrainedModel:
    """The original model, trained on all training data with the recipe, or loaded from the cache."""
    return retrained_reference(
        exp.config.resolved_cache_dir, _key_fields(exp, _ORIGINAL_SCENARIO),
        _train_from_scratch(exp, None, _ORIGINAL_STREAM, "original"), reference=exp.model,
        refresh=refresh, device=exp.device, prefix="original",
    )  # fmt: skip


def train_retrained(exp: Experiment, *, refresh: bool = False) -> RetrainedModel:
    """The reference retrained from scratch on the retain set with the recipe, or loaded from the cache."""
    return retrained_reference(
        exp.config.resolved_cache_dir, _key_fields(exp, exp.split),
        _train_from_scratch(exp, exp.split.retain, _RETRAIN_STREAM, "retrain"), reference=exp.model,
        refresh=refresh, device=exp.device,
    )  # fmt: skip


@dataclass(eq=False)
class MethodRun:
    """One method's result: its params, its time (see the module docstring), its run history
    (training presets) and the settings it ran with; ``info`` holds a closed-form method's
    candidate table."""

    name: str
    params: Params
    buffers: Buffers
    time_s: float
    history: History | None
    stop_reason: str
    settings: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class _Clock:
    """Accumulates the wall time of the calls it wraps (synchronising CUDA before reading)."""

    def __init__(self, device: torch.device) -> None:
        self.seconds, self.cuda = 0.0, device.type == "cuda"

    def timed(self, fn: Callable) -> Callable:
        def wrapper(*args: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args)
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
            return out

        return wrapper


def _context(exp: Experiment, name: str, params: Params, buffers: Buffers, selection: Mapping | None,
             steps_per_epoch: int = 1, epochs: int = 1) -> PresetContext:  # fmt: skip
    cfg = exp.config
    return PresetContext(
        exp.model, params, buffers, exp.loaders, exp.bundle.num_classes, steps_per_epoch=steps_per_epoch,
        epochs=epochs, learning_rate=cfg.unlearning.learning_rate(name), seed=cfg.seed,
        forget_classes=exp.forget_classes, train_weight_decay=cfg.training.weight_decay,
        options=cfg.unlearning.options_for(name), selection=selection, progress=cfg.progress,
    )  # fmt: skip


def run_method(
    exp: Experiment, name: str, params: Params, buffers: Buffers, *, selection: Mapping[str, Any] | None = None
) -> MethodRun:
    """Run preset ``name`` from the original ``(params, buffers)`` with the config's unlearning settings.

    ``selection``: the evaluation sets a closed-form preset chooses its strength on (default: fixed
    subsets of the split's evaluation loaders, see :class:`~funlearn.PresetContext`).
    """
    cfg, preset = exp.config, get_preset(name)
    clock = _Clock(exp.device)
    if preset.kind == "closed_form":
        ctx = _context(exp, preset.name, params, buffers, selection)
        result = clock.timed(run_closed_form)(preset.name, ctx)
        chosen = result.table[result.best]
        return MethodRun(
            preset.name, result.params, result.buffers, clock.seconds, None, f"chosen: {chosen}",
            {"options": dict(ctx.options)}, {"candidates": result.table},
        )  # fmt: skip
    steps = merged_batches(
        exp.loaders["forget"], exp.loaders["retain"], epoch_length=cfg.unlearning.epoch_length,
        seed=fold_in(cfg.seed, _MERGE_STREAM),
    )  # fmt: skip
    epochs = cfg.unlearning.epochs_for(preset.name)
    ctx = _context(exp, preset.name, params, buffers, selection, len(steps), epochs)
    method = clock.timed(build_method)(preset.name, ctx)
    step = compile_step(method.step, cfg.compile, exp.device)
    timed = Method(clock.timed(method.init), clock.timed(step))
    total = epochs * len(steps)
    result = run(
        timed, params, buffers, steps, epochs=epochs, seed=cfg.seed, model=exp.model,
        eval_loaders=exp.curve_loaders(), eval_every=max(1, math.ceil(total / cfg.eval_points)),
        eval_subset=cfg.eval_subset, eval_at_start=True, progress=cfg.progress, desc=preset.name, compile=False,
    )  # fmt: skip
    settings = {
        "learning_rate": ctx.lr(preset.learning_rate), "epochs": epochs, "steps": result.counters.step,
        "batch_size": cfg.unlearning.batch_size, "options": dict(ctx.options),
    }  # fmt: skip
    return MethodRun(preset.name, result.params, result.buffers, clock.seconds, result.history,
                     result.stop_reason, settings)  # fmt: skip


def evaluate_models(
    exp: Experiment,
    retrained: RetrainedModel | None,
    models: Mapping[str, tuple[Params, Buffers, float | None]],
) -> tuple[RetrainBaseline | None, dict[str, UnlearningEvaluation]]:
    """Evaluate ``{name: (params, buffers, time_s)}`` on the split, against ``retrained`` when given.

    All models are evaluated on every sample of the retain, forget and test sets, with the same
    attack settings (the MIA SVC on at most ``config.mia_max_samples`` samples per side; the loss
    attack when the forget set has at least 20 samples). ZRF's random model is seeded apart from
    BadTeacher's incompetent teacher (which is ``random_init(model, seed)``).
    """
    cfg = exp.config
    eval_config = EvaluationConfig(
        seed=cfg.seed, mia_max_samples=cfg.mia_max_samples, loss_mia=exp.split.forget.numel() >= 20
    )
    random_params, random_buffers = random_init(exp.model, fold_in(cfg.seed, _ZRF_STREAM), device=exp.device)
    random_forget = collect_predictions(exp.model, random_params, random_buffers, exp.loaders["forget_eval"])
    baseline = None
    if retrained is not None:
        baseline = retrain_baseline(
            predict_split(exp.model, retrained.params, retrained.buffers, exp.loaders),
            time_s=retrained.time_s, random_forget=random_forget, config=eval_config,
        )
    evaluations = {
        name: evaluate_unlearning(
            predict_split(exp.model, params, buffers, exp.loaders), baseline=baseline, time_s=time_s,
            random_forget=random_forget, config=None if baseline is not None else eval_config,
        )  # fmt: skip
        for name, (params, buffers, time_s) in models.items()
    }
    return baseline, evaluations


@dataclass(eq=False)
class Comparison:
    """The result of :func:`compare_methods`: the report, every evaluation and run, and the files written."""

    experiment: Experiment
    report: Report
    original: UnlearningEvaluation
    baseline: RetrainBaseline | None
    evaluations: dict[str, UnlearningEvaluation]
    runs: dict[str, MethodRun]
    paths: dict[str, Path] = field(default_factory=dict)


def _settings_note(exp: Experiment, runs: Mapping[str, MethodRun]) -> list[str]:
    cfg = exp.config
    t = cfg.training
    notes = [
        f"original and retrain: {cfg.model} {dict(cfg.model_kwargs) or ''} trained {t.epochs} epochs, "
        f"{t.optimizer} lr {t.learning_rate:g} ({t.schedule}), batch {t.batch_size}, weight decay {t.weight_decay:g}, "
        f"seed {cfg.seed}".replace("  ", " "),
    ]
    for name, r in runs.items():
        s = r.settings
        if "learning_rate" in s:
            epochs = f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}"
            line = f"{name}: lr {s['learning_rate']:g}, {epochs} ({s['steps']} steps of {s['batch_size']} forget + {s['batch_size']} retain)"
        else:
            line = f"{name}: {r.stop_reason}"
        if s.get("options"):
            line += f", options {s['options']}"
        if "learning_rate" in s and not r.stop_reason.startswith("completed"):
            line += f"; {r.stop_reason}"
        notes.append(line)
    notes.append("time: building the method, its init and its steps (evaluations for the curves excluded); "
                 "Time/RT: as a fraction of the retrained model's training time")  # fmt: skip
    return notes


def _trained(what: str, model: RetrainedModel) -> str:
    return f"{what}: loaded from {model.path}" if model.cached else f"{what}: trained in {model.time_s:.1f} s"


def compare_methods(
    config: ExperimentConfig,
    *,
    experiment: Experiment | None = None,
    original: tuple[Params, Buffers] | None = None,
    retrain: bool = True,
    refresh: bool = False,
    output_dir: str | os.PathLike | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Comparison:
    """The whole pipeline (see the module docstring) for ``config.methods``.

    ``experiment``: an already prepared one (default: :func:`prepare_experiment`); ``original``: the
    model to unlearn from (default: :func:`train_original`, cached); ``retrain=False`` skips the
    retrained reference (no gaps then); ``refresh=True`` trains both again even when cached. Writes the report and plots to ``output_dir`` when given
    (:func:`write_comparison`). ``command`` is noted under the table; ``log`` receives one line per
    stage (e.g. ``print``).
    """
    if not config.methods:
        raise ValueError("config.methods is empty: name at least one method (see funlearn.available_presets())")
    say = log or (lambda _: None)
    exp = experiment if experiment is not None else prepare_experiment(config)
    say(f"{exp.title}: {exp.split.retain.numel()} retain, {exp.split.forget.numel()} forget samples")
    if original is None:
        trained = train_original(exp, refresh=refresh)
        say(_trained("original model", trained))
        original = (trained.params, trained.buffers)
    retrained = None
    if retrain:
        retrained = train_retrained(exp, refresh=refresh)
        say(_trained("retrained reference", retrained))
    runs = {name: run_method(exp, name, *original) for name in config.methods}
    say("evaluating" + (" against the retrained model" if retrain else ""))
    models = {"original": (*original, None), **{name: (r.params, r.buffers, r.time_s) for name, r in runs.items()}}
    baseline, evaluations = evaluate_models(exp, retrained, models)
    original_eval = evaluations.pop("original")
    notes = ([f"command: {command}"] if command else []) + _settings_note(exp, runs)
    report = make_report(evaluations, original=original_eval, retrained=baseline.evaluation if baseline else None,
                         title=exp.title, notes=notes)  # fmt: skip
    comparison = Comparison(exp, report, original_eval, baseline, evaluations, runs)
    if output_dir is not None:
        comparison.paths = write_comparison(comparison, output_dir)
    return comparison


def write_comparison(comparison: Comparison, output_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.{md,csv,json,txt}``, each training run's history under ``runs/<method>/``,
    and, when matplotlib is installed, ``curves.png`` and ``tradeoff.png``."""
    out = Path(output_dir)
    paths = comparison.report.save(out)
    for name, r in comparison.runs.items():
        if r.history is not None:
            r.history.write(out / "runs" / name)
    if importlib.util.find_spec("matplotlib") is None:
        return paths
    title = comparison.experiment.title
    histories = {name: r.history for name, r in comparison.runs.items() if r.history is not None}
    if histories:
        ref = comparison.baseline.evaluation if comparison.baseline is not None else None
        reference = {"RA": ref.retain_acc, "FA": ref.forget_acc, "TA": ref.test_acc} if ref is not None else None
        paths["curves"] = plot_curves(histories, out / "curves.png", x="step", reference=reference, title=title)
    if comparison.baseline is not None:
        paths["tradeoff"] = plot_tradeoff(comparison.report, out / "tradeoff.png", title=title)
    return paths


def console_table(report: Report, columns: Sequence[str] = CONSOLE_COLUMNS) -> str:
    """The report's table with the console ``columns`` that it has (no notes)."""
    kept = [c for c in columns if c in report.columns]
    return Report(kept, report.rows, report.title).console()


# ------------------------------------------------------------------------- model files


def save_model_file(
    path: str | os.PathLike, exp: Experiment, params: Params, buffers: Buffers, **extra: Any
) -> Path:
    """Save params with what rebuilds the model and its experiment (dataset, model, recipe, seed)."""
    cfg = exp.config
    metadata = {
        "funlearn_experiment": {
            "dataset": cfg.dataset, "model": cfg.model, "model_kwargs": dict(cfg.model_kwargs),
            "training": cfg.training.as_dict(), "seed": cfg.seed, **extra,
        }
    }  # fmt: skip
    save_params(path, params, buffers, metadata)
    return Path(path)


def load_model_file(path: str | os.PathLike, exp: Experiment) -> tuple[Params, Buffers, dict[str, Any]]:
    """Load params saved by :func:`save_model_file` for ``exp``'s model, onto its device.

    The file's dataset and model must be the experiment's (names, shapes and dtypes are checked)."""
    params, buffers, metadata = load_params(path, exp.model, device=exp.device)
    info = metadata.get("funlearn_experiment", {})
    for key, want in (("dataset", exp.config.dataset), ("model", exp.config.model)):
        if key in info and info[key] != want:
            raise ValueError(f"{path} holds a {info[key]!r} {key}, but the experiment's {key} is {want!r}")
    return params, buffers, info


def read_experiment_fields(path: str | os.PathLike) -> dict[str, Any]:
    """The experiment settings stored in a model file by :func:`save_model_file` (empty if none)."""
    _, metadata = load_tensors(path)
    return dict(metadata.get("funlearn_experiment", {}))


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (``"class:3"`` -> ``"class_3"``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"
