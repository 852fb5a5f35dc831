"""The engine: the loop (:func:`run`, :func:`train`), evaluation during a run, best selection,
records, checkpoints and resume, progress and logging, and the compile policy."""

from funlearn.engine.best import BestCriterion, closest_to, select_best
from funlearn.engine.checkpoint import Checkpoint, Counters, RunDir, load_checkpoint, save_checkpoint
from funlearn.engine.compile import compile_step
from funlearn.engine.evaluate import Evaluator, accuracies, fixed_subset, predict_logits
from funlearn.engine.loop import NonFiniteError, RunResult, run
from funlearn.engine.plot import plot_history
from funlearn.engine.records import History, load_history
from funlearn.engine.supervised import train

__all__ = [
    "BestCriterion",
    "Checkpoint",
    "Counters",
    "Evaluator",
    "History",
    "NonFiniteError",
    "RunDir",
    "RunResult",
    "accuracies",
    "closest_to",
    "compile_step",
    "fixed_subset",
    "load_checkpoint",
    "load_history",
    "plot_history",
    "predict_logits",
    "run",
    "save_checkpoint",
    "select_best",
    "train",
]
