"""Experiments: the preset registry and the pipeline behind the ``funlearn`` command and the benchmarks.

* ``presets``: every unlearning method by name, built from one uniform :class:`PresetContext`.
* ``config``: the training recipe, the unlearning settings and per-dataset defaults.
* ``pipeline``: dataset -> split -> original model (cached) -> retrained reference (cached) ->
  methods (engine) -> evaluation against retraining -> report and plots.
"""

from funlearn.experiment.config import (
    DATASET_DEFAULTS,
    ConfigError,
    ExperimentConfig,
    TrainingRecipe,
    UnlearningSettings,
    canonical_dataset,
    default_cache_dir,
)
from funlearn.experiment.pipeline import (
    CONSOLE_COLUMNS,
    Comparison,
    Experiment,
    MethodRun,
    compare_methods,
    console_table,
    evaluate_models,
    load_model_file,
    prepare_experiment,
    read_experiment_fields,
    resolve_device,
    run_method,
    save_model_file,
    train_original,
    train_retrained,
    write_comparison,
)
from funlearn.experiment.presets import (
    Preset,
    PresetContext,
    available_presets,
    build_method,
    get_preset,
    register_preset,
    run_closed_form,
)

__all__ = [
    "CONSOLE_COLUMNS",
    "DATASET_DEFAULTS",
    "Comparison",
    "ConfigError",
    "Experiment",
    "ExperimentConfig",
    "MethodRun",
    "Preset",
    "PresetContext",
    "TrainingRecipe",
    "UnlearningSettings",
    "available_presets",
    "build_method",
    "canonical_dataset",
    "compare_methods",
    "console_table",
    "default_cache_dir",
    "evaluate_models",
    "get_preset",
    "load_model_file",
    "prepare_experiment",
    "read_experiment_fields",
    "register_preset",
    "resolve_device",
    "run_closed_form",
    "run_method",
    "save_model_file",
    "train_original",
    "train_retrained",
    "write_comparison",
]
