"""The ``funlearn`` command: train, unlearn, compare, evaluate, and the demo.

    funlearn demo                                          # digits: random 10% and class 1, 12 methods
    funlearn train --dataset fashion_mnist                 # the original model (cached)
    funlearn unlearn --method salun --forget class:1       # one method, against the retrained model
    funlearn compare --methods finetune,salun,scrub --forget random:0.1
    funlearn evaluate --params funlearn-out/unlearn/salun.safetensors

Every command is a thin layer over :mod:`funlearn.experiment`. Options are checked before any
work starts: an invalid one fails with a message naming the option and its valid values. Tables go
to stdout, progress bars and stage lines to stderr.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from funlearn._version import __version__
from funlearn.data.loaders import TensorLoader
from funlearn.data.scenarios import parse_scenario
from funlearn.engine.evaluate import accuracies
from funlearn.evaluation.report import make_report
from funlearn.experiment.config import (
    ConfigError,
    ExperimentConfig,
    TrainingRecipe,
    canonical_dataset,
    default_cache_dir,
)
from funlearn.experiment.pipeline import (
    Comparison,
    compare_methods,
    console_table,
    evaluate_models,
    load_model_file,
    prepare_experiment,
    read_experiment_fields,
    resolve_device,
    save_model_file,
    slug,
    train_original,
    train_retrained,
)
from funlearn.experiment.presets import available_presets, get_preset
from funlearn.io import CheckpointError, atomic_write_text
from funlearn.models.registry import create_model

__all__ = ["DEMO_METHODS", "DEMO_SCENARIOS", "build_parser", "main"]

DEMO_SCENARIOS: tuple[str, ...] = ("random:0.1", "class:1")
DEMO_METHODS: tuple[str, ...] = tuple(available_presets())
_OPTION_OF_FIELD = {
    "dataset": "--dataset", "scenario": "--forget", "model": "--model", "device": "--device",
    "batch_size": "--batch-size", "data_root": "--data-root",
}  # fmt: skip


# ----------------------------------------------------------------------------- option types


def _value_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` that turns the parser's ValueError into argparse's own error message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, TypeError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__.strip("_")
    return convert


@_value_type
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip().lstrip("+"):
        raise ValueError(f"must be a positive integer (got {text!r})")
    return value


@_value_type
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be an integer (got {text!r})") from None


def _float_value(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{what} must be a positive number (got {text!r})")
    return value


@_value_type
def _learning_rate(text: str) -> float:
    return _float_value(text, "the learning rate")


@_value_type
def _method_learning_rate(text: str) -> tuple[str | None, float]:
    """``0.01`` (every training method) or ``NAME=0.01`` (one method)."""
    if "=" not in text:
        return None, _float_value(text, "the learning rate")
    name, value = text.split("=", 1)
    preset = get_preset(name)
    if preset.learning_rate is None:
        training = ", ".join(available_presets("training"))
        raise ValueError(f"{preset.name} is a closed-form method without a learning rate; methods with one: {training}")
    return preset.name, _float_value(value, f"the learning rate of {preset.name}")


@_value_type
def _dataset(text: str) -> str:
    return canonical_dataset(text)


@_value_type
def _scenario(text: str) -> str:
    parse_scenario(text)
    return text


@_value_type
def _model(text: str) -> str:
    with torch.device("meta"):  # checks the name (and builds nothing real)
        create_model(text, num_classes=2, in_channels=1, image_size=32)
    return text


@_value_type
def _method(text: str) -> str:
    return get_preset(text).name


@_value_type
def _methods(text: str) -> tuple[str, ...]:
    if text.strip().lower() == "all":
        return tuple(available_presets())
    names = tuple(get_preset(name).name for name in text.split(",") if name.strip())
    if not names:
        raise ValueError(f"name at least one method (comma-separated) or 'all'; valid: {', '.join(available_presets())}")
    return names


@_value_type
def _device(text: str) -> str:
    resolve_device(text)
    return text


_COMPILE = {"auto": "auto", "true": True, "false": False}


# ----------------------------------------------------------------------------- the parser


def _data_options(parser: argparse.ArgumentParser, *, forget: str | None, repeatable: bool = False) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", type=_dataset, default=None, metavar="NAME",
                       help="dataset name (default: digits, the embedded one); offline sets are looked for "
                            "in --data-root, $FUNLEARN_DATA and system locations")  # fmt: skip
    group.add_argument("--data-root", default=None, metavar="DIR", help="directory holding the dataset files")
    group.add_argument("--download", action="store_true", help="download a missing dataset with torchvision")
    if forget is not None:
        group.add_argument("--forget", type=_scenario, default=None, metavar="SPEC", help=forget,
                           action="append" if repeatable else "store")  # fmt: skip


def _model_options(parser: argparse.ArgumentParser, *, train_command: bool) -> None:
    """The original model and its training recipe (also the retrained reference's)."""
    group = parser.add_argument_group(
        "original model" if train_command else "original model and retrained reference",
        "how the model is trained (the retrained reference uses the same recipe on the retain set)",
    )
    group.add_argument("--model", type=_model, default=None, metavar="NAME",
                       help="model name: small_cnn, lenet, mlp, resnet18, ..., or torchvision:NAME "
                            "(default: the dataset's, small_cnn)")  # fmt: skip
    prefix = "" if train_command else "train-"
    group.add_argument(f"--{prefix}epochs", dest="train_epochs", type=_positive_int, default=None, metavar="N",
                       help="training epochs (default: the dataset's, 10 for digits)")  # fmt: skip
    group.add_argument(f"--{prefix}lr", dest="train_lr", type=_learning_rate, default=None, metavar="LR",
                       help="training learning rate (default: the dataset's, 3e-3 for digits)")  # fmt: skip
    group.add_argument(f"--{prefix}optimizer", dest="train_optimizer", choices=("adam", "sgd"), default=None,
                       help="training optimizer (default: the dataset's, adam for digits)")  # fmt: skip
    group.add_argument(f"--{prefix}batch-size", dest="train_batch_size", type=_positive_int, default=None,
                       metavar="N", help="training batch size (default: the dataset's, 64 for digits)")  # fmt: skip


def _unlearning_options(parser: argparse.ArgumentParser, *, methods: bool = True) -> None:
    group = parser.add_argument_group("unlearning", "how the methods run from the original model")
    if methods:
        group.add_argument("--methods", type=_methods, default=None, metavar="M1,M2|all",
                           help=f"methods to compare (default: all): {', '.join(available_presets())}")  # fmt: skip
    group.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                       help="unlearning epochs of merged forget/retain steps (default: the dataset's, 1 for digits)")  # fmt: skip
    group.add_argument("--lr", type=_method_learning_rate, action="append", default=[], metavar="[METHOD=]LR",
                       help="learning rate of every training method, or METHOD=LR for one (repeatable); "
                            "default: the dataset's tuned rates (digits), else each preset's literature default")  # fmt: skip
    group.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                       help="forget and retain samples per unlearning step, each (default: the dataset's, 32 for digits)")  # fmt: skip


def _run_options(parser: argparse.ArgumentParser, command: str, output: str) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=_int, default=None, metavar="N",
                       help="seed of the split, the initialisation and every random draw (default: 0)")  # fmt: skip
    group.add_argument("--device", type=_device, default="auto", metavar="DEVICE",
                       help="auto (CUDA when available, else cpu), cpu, cuda, cuda:N or mps (default: auto)")  # fmt: skip
    group.add_argument("--compile", choices=tuple(_COMPILE), default="auto",
                       help="torch.compile the steps: auto compiles on CUDA only (default: auto)")
    group.add_argument("--output", "-o", type=Path, default=Path("funlearn-out") / command, metavar="DIR",
                       help=f"{output} (default: ./funlearn-out/{command})")  # fmt: skip
    group.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                       help=f"where trained original and retrained models are cached (default: $FUNLEARN_CACHE or "
                            f"{default_cache_dir()})")  # fmt: skip
    group.add_argument("--refresh", action="store_true", help="train again even when the cache holds the model")
    group.add_argument("--no-progress", action="store_true", help="no progress bars or stage lines")


def build_parser() -> argparse.ArgumentParser:
    """The ``funlearn`` argument parser with its five subcommands."""
    parser = argparse.ArgumentParser(
        prog="funlearn",
        description="Machine unlearning for PyTorch: train a model, forget part of its training data, and "
        "compare each method with a model retrained from scratch without that data.",
        epilog="Run 'funlearn COMMAND --help' for a command's options. Start with 'funlearn demo'.",
    )
    parser.add_argument("--version", action="version", version=f"funlearn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    methods = ", ".join(available_presets())
    forget_help = ('what to forget: random:0.1 (a random 10%%), random:500, class:3, class:3,5, '
                   'subclass:3:0.5, indices:FILE (default: random:0.1)')  # fmt: skip

    demo = commands.add_parser(
        "demo", help="the main job: compare methods with retraining on digits (random 10%% and class 1)",
        description="Train a small CNN on the embedded digits data, forget a random 10% and then class 1 "
        "with every method, retrain references from scratch, and print the comparison tables "
        "(Avg. Gap: mean distance to the retrained model over FA, RA, TA and MIA; lower is better). "
        "About a minute on 2 CPU cores; reports and plots go to --output.",
    )  # fmt: skip
    _data_options(demo, forget="a scenario to run instead of the two defaults, random:0.1 and class:1 "
                  "(repeatable)", repeatable=True)  # fmt: skip
    _model_options(demo, train_command=False)
    _unlearning_options(demo)
    _run_options(demo, "demo", "directory for the reports and plots, one subdirectory per scenario")

    train = commands.add_parser("train", help="train an original model on a dataset",
                                description="Train the original model on all training data (cached), print its "
                                "accuracy and save it to OUTPUT/original.safetensors.")  # fmt: skip
    _data_options(train, forget=None)
    _model_options(train, train_command=True)
    _run_options(train, "train", "directory for original.safetensors")

    unlearn = commands.add_parser("unlearn", help="run one method on a scenario",
                                  description="Unlearn a scenario with one method from the original model "
                                  "(--params, or trained with the recipe and cached), evaluate it against the "
                                  "retrained model and save OUTPUT/METHOD.safetensors and the report.")  # fmt: skip
    unlearn.add_argument("--method", type=_method, required=True, metavar="NAME", help=f"the method: {methods}")
    unlearn.add_argument("--params", type=Path, default=None, metavar="FILE",
                         help="the original model, a file from 'funlearn train' (default: train it, cached)")  # fmt: skip
    _data_options(unlearn, forget=forget_help)
    _model_options(unlearn, train_command=False)
    _unlearning_options(unlearn, methods=False)
    unlearn.add_argument("--no-retrain", dest="retrain", action="store_false",
                         help="skip the retrained reference (no gaps, no Avg. Gap)")
    _run_options(unlearn, "unlearn", "directory for the unlearned params and the report")

    compare = commands.add_parser("compare", help="compare several methods with the retrained reference",
                                  description="Run several methods on a scenario from the original model, "
                                  "retrain the reference (cached), and write the table (Markdown, CSV, JSON) and "
                                  "plots (accuracy curves, forget/utility trade-off).")  # fmt: skip
    _data_options(compare, forget=forget_help)
    _model_options(compare, train_command=False)
    _unlearning_options(compare)
    _run_options(compare, "compare", "directory for the report and plots")

    evaluate = commands.add_parser("evaluate", help="evaluate saved params against the retrained model",
                                   description="Evaluate saved params (files from 'funlearn train' or 'funlearn "
                                   "unlearn'; their dataset, model and recipe are read from the file) on a "
                                   "scenario, against the retrained reference.")  # fmt: skip
    evaluate.add_argument("--params", type=Path, nargs="+", required=True, metavar="FILE", help="the params to evaluate")
    _data_options(evaluate, forget=forget_help.replace("default: random:0.1", "default: the file's scenario"))
    evaluate.add_argument("--no-retrain", dest="retrain", action="store_false",
                          help="skip the retrained reference (no gaps, no Avg. Gap)")
    _run_options(evaluate, "evaluate", "directory for the report")
    return parser


# ----------------------------------------------------------------------------- configuration


def _config(args: argparse.Namespace, methods: Sequence[str], scenario: str, stored: dict[str, Any]) -> ExperimentConfig:
    """The experiment of the command line: the dataset's defaults, a model file's settings
    (``stored``: they must not be contradicted, since the retrained reference must share the
    original's recipe), then the options given."""
    parser_error = args.parser_error
    dataset = args.dataset or stored.get("dataset") or "digits"
    if stored.get("dataset") and args.dataset and dataset != stored["dataset"]:
        parser_error(f"argument --dataset: {args.params_name} holds a {stored['dataset']} model, not {dataset}")
    base = ExperimentConfig.for_dataset(dataset)
    model = getattr(args, "model", None) or stored.get("model") or base.model
    if stored.get("model") and getattr(args, "model", None) and model != stored["model"]:
        parser_error(f"argument --model: {args.params_name} holds a {stored['model']} model, not {model}")
    model_kwargs = stored.get("model_kwargs", base.model_kwargs if model == base.model else {})
    training = TrainingRecipe(**stored["training"]) if "training" in stored else base.training
    given = {
        "epochs": getattr(args, "train_epochs", None), "learning_rate": getattr(args, "train_lr", None),
        "optimizer": getattr(args, "train_optimizer", None), "batch_size": getattr(args, "train_batch_size", None),
    }  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    if "training" in stored and given:
        parser_error(f"training options {sorted(given)} cannot change the recipe stored in {args.params_name}: "
                     "the retrained reference must be trained like the original model")  # fmt: skip
    training = replace(training, **given)
    unlearning = base.unlearning
    if getattr(args, "epochs", None) is not None:
        unlearning = replace(unlearning, epochs=args.epochs, method_epochs={})
    if getattr(args, "batch_size", None) is not None:
        unlearning = replace(unlearning, batch_size=args.batch_size)
    rates: dict[str, float] = {}
    for name, lr in getattr(args, "lr", []):
        targets = [name] if name else [m for m in methods if get_preset(m).learning_rate is not None]
        rates.update(dict.fromkeys(targets, lr))
    seed = args.seed if args.seed is not None else stored.get("seed", 0)
    try:
        return ExperimentConfig(
            dataset=dataset, scenario=scenario, methods=tuple(methods), model=model, model_kwargs=model_kwargs,
            training=training, unlearning=unlearning.with_learning_rates(rates), seed=seed,
            data_root=args.data_root, download=args.download, device=args.device, compile=_COMPILE[args.compile],
            cache_dir=args.cache_dir, progress=not args.no_progress,
        )  # fmt: skip
    except ValueError as err:
        parser_error(str(err))
        raise  # unreachable: parser_error exits


def _prepare(args: argparse.Namespace, config: ExperimentConfig):
    """Load the data, split it and build the model; a setting that cannot work is a usage error."""
    try:
        return prepare_experiment(config)
    except ConfigError as err:
        option = _OPTION_OF_FIELD.get(err.field, err.field)
        hint = " (on the command line: --download, or --data-root DIR)" if err.field == "dataset" else ""
        args.parser_error(f"argument {option}: {err.message}{hint}")


def _stage(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda _: None) if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))


def _stored(args: argparse.Namespace, path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        args.parser_error(f"argument --params: {path} is not a file; pass a .safetensors file from 'funlearn train'")
    args.params_name = str(path)
    try:
        return read_experiment_fields(path)
    except (CheckpointError, ValueError) as err:
        args.parser_error(f"argument --params: {err}")
        raise


def _print_comparison(comparison: Comparison) -> None:
    print(console_table(comparison.report), flush=True)
    if comparison.paths:
        print(f"wrote {', '.join(str(p) for p in comparison.paths.values())}", file=sys.stderr)


# ----------------------------------------------------------------------------- commands


def _cmd_demo(args: argparse.Namespace, command: str) -> None:
    scenarios = args.forget or list(DEMO_SCENARIOS)
    methods = args.methods or DEMO_METHODS
    configs = [_config(args, methods, scenario, {}) for scenario in scenarios]
    experiments = [_prepare(args, config) for config in configs]  # every option checked before any training
    start, sections = time.perf_counter(), ["# funlearn demo", "", f"Command: `{command}`", ""]
    for config, exp in zip(configs, experiments):
        comparison = compare_methods(config, experiment=exp, output_dir=args.output / slug(config.scenario),
                                     refresh=args.refresh, command=command, log=_stage(args))  # fmt: skip
        print()
        _print_comparison(comparison)
        sections += [comparison.report.markdown(legend=False), ""]
    elapsed = time.perf_counter() - start
    sections.append(f"Total {elapsed:.0f} s. Avg. Gap: the mean of |FA|, |RA|, |TA|, |MIA| differences to the "
                    "retrained model (points; lower is better). See each scenario's report.md for every metric.")  # fmt: skip
    atomic_write_text(args.output / "summary.md", "\n".join(sections) + "\n")
    print(f"\ndemo finished in {elapsed:.0f} s; reports and plots in {args.output}/", flush=True)


def _cmd_train(args: argparse.Namespace, command: str) -> None:
    config = _config(args, (), "random:0.1", {})
    exp = _prepare(args, config)
    log = _stage(args)
    trained = train_original(exp, refresh=args.refresh)
    log(f"original model {'loaded from ' + str(trained.path) if trained.cached else f'trained in {trained.time_s:.1f} s'}")
    bundle = exp.bundle
    train_eval = TensorLoader(bundle.train_x, bundle.train_y, 512, shuffle=False)
    acc = accuracies(exp.model, trained.params, trained.buffers, {"train": train_eval, "test": exp.loaders["test"]})
    path = save_model_file(args.output / "original.safetensors", exp, trained.params, trained.buffers,
                           role="original", train_time_s=trained.time_s, command=command)  # fmt: skip
    t = config.training
    print(f"{config.dataset}, {config.model}: {t.epochs} epochs of {t.optimizer} lr {t.learning_rate:g}, "
          f"batch {t.batch_size}, seed {config.seed}")  # fmt: skip
    print(f"train accuracy {acc['acc/train']:.2f}%, test accuracy {acc['acc/test']:.2f}%, "
          f"training time {trained.time_s:.1f} s")  # fmt: skip
    print(f"saved {path}")


def _cmd_unlearn(args: argparse.Namespace, command: str) -> None:
    stored = _stored(args, args.params)
    config = _config(args, (args.method,), args.forget or "random:0.1", stored)
    exp = _prepare(args, config)
    original = None
    if args.params is not None:
        try:
            params, buffers, _ = load_model_file(args.params, exp)
        except (CheckpointError, ValueError) as err:
            args.parser_error(f"argument --params: {err}")
        original = (params, buffers)
    comparison = compare_methods(config, experiment=exp, original=original, retrain=args.retrain,
                                 refresh=args.refresh, output_dir=args.output, command=command,
                                 log=_stage(args))  # fmt: skip
    run = comparison.runs[config.methods[0]]
    path = save_model_file(
        args.output / f"{run.name}.safetensors", exp, run.params, run.buffers, role="unlearned",
        method=run.name, scenario=config.scenario, settings=run.settings, time_s=run.time_s, command=command,
    )  # fmt: skip
    comparison.paths["params"] = path
    _print_comparison(comparison)


def _cmd_compare(args: argparse.Namespace, command: str) -> None:
    config = _config(args, args.methods or tuple(available_presets()), args.forget or "random:0.1", {})
    exp = _prepare(args, config)
    comparison = compare_methods(config, experiment=exp, output_dir=args.output, refresh=args.refresh,
                                 command=command, log=_stage(args))  # fmt: skip
    _print_comparison(comparison)


def _cmd_evaluate(args: argparse.Namespace, command: str) -> None:
    stored = _stored(args, args.params[0])
    scenario = args.forget or stored.get("scenario")
    if scenario is None:
        args.parser_error(f"argument --forget: {args.params[0]} records no scenario; pass --forget (e.g. class:1)")
    config = _config(args, (), scenario, stored)
    exp = _prepare(args, config)
    models: dict[str, tuple] = {}
    for path in args.params:
        if not path.is_file():
            args.parser_error(f"argument --params: {path} is not a file")
        try:
            params, buffers, info = load_model_file(path, exp)
        except (CheckpointError, ValueError) as err:
            args.parser_error(f"argument --params: {err}")
        models[path.stem if path.stem not in models else str(path)] = (params, buffers, info.get("time_s"))
    retrained = train_retrained(exp, refresh=args.refresh) if args.retrain else None
    baseline, evaluations = evaluate_models(exp, retrained, models)
    report = make_report(evaluations, retrained=baseline.evaluation if baseline else None, title=exp.title,
                         notes=[f"command: {command}"])  # fmt: skip
    paths = report.save(args.output)
    print(console_table(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)


_COMMANDS = {"demo": _cmd_demo, "train": _cmd_train, "unlearn": _cmd_unlearn, "compare": _cmd_compare,
             "evaluate": _cmd_evaluate}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``funlearn`` command line (``argv`` defaults to ``sys.argv[1:]``); returns the exit code.

    Usage errors exit with status 2 (argparse's convention) before any work; an error during the
    work (a corrupt cache file, a run that cannot finish) prints its message and returns 1.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    args.parser_error, args.params_name = subparser.error, "the params file"
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)
    command = "funlearn " + shlex.join(argv)
    try:
        _COMMANDS[args.command](args, command)
    except (CheckpointError, ConfigError, RuntimeError, FileNotFoundError) as err:
        print(f"funlearn {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0
