"""torchunlearn's ``UnlearningEvaluator`` and benchmark helpers on funlearn's evaluation metrics.

``UnlearningEvaluator(...).evaluate()`` returns torchunlearn's keys:

* ``RA``, ``FA``, ``TA``: accuracies (%) on Retain, Forget and Test (class-wise: the kept classes);
* ``UG``: ``|RA(retrained) - RA|`` (with ``retrained_model``; torchunlearn's definition, a retain gap
  only: :func:`funlearn.evaluate_unlearning` gives the full gaps to retraining);
* ``MIA_Efficiency``: :func:`funlearn.mia_efficacy` as a fraction in [0, 1]: the share of forget
  samples an SVC on the true-class confidence (trained on retain vs test) calls non-member. Higher
  means the forget set looks unseen, but higher is **not** better: the target is the retrained
  model's value (torchunlearn printed "low is good", Q2);
* ``ZRF``: :func:`funlearn.zrf_score`, ``1 - mean JS`` to a randomly initialised model (seeded) on the
  forget set, the published definition (torchunlearn: cosine of raw logits to an unseeded random
  network, Q4).

Every set is a fixed random subset of ``n_limit`` samples drawn from ``seed`` (torchunlearn took
the first batches, Q6), the same for every model, so predictions are row-aligned. Errors are raised
(torchunlearn silently dropped MIA and ZRF on any exception, Q1).
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from funlearn.compat.data import check_normalization, eval_view
from funlearn.compat.robmodel import RobModel
from funlearn.engine.evaluate import fixed_subset
from funlearn.evaluation.divergence import zrf_score
from funlearn.evaluation.metrics import accuracy_percent
from funlearn.evaluation.mia import mia_efficacy
from funlearn.evaluation.predictions import Predictions, collect_predictions
from funlearn.model import random_init
from funlearn.random import fold_in

__all__ = ["UnlearningEvaluator", "compare", "print_table", "to_dataframe", "BenchmarkSuite", "METRIC_ORDER"]

METRIC_ORDER = ["RA", "FA", "TA", "UG", "MIA_Efficiency", "ZRF"]
_FORMAT = {"RA": ("%", 2), "FA": ("%", 2), "TA": ("%", 2), "UG": ("%", 2), "MIA_Efficiency": ("", 4), "ZRF": ("", 4)}
_LABELS = {
    "RA": "Retain Accuracy   (high is good)",
    "FA": "Forget Accuracy   (target: the retrained model's; ~TA after random, ~0 after class-wise forgetting)",
    "TA": "Test Accuracy     (high is good)",
    "UG": "Unlearning Gap    (|RA(retrained) - RA|, low is good)",
    "MIA_Efficiency": "MIA Efficiency    (forget share called non-member; target: the retrained model's, not 0 or 1)",
    "ZRF": "ZRF Score         (1 - JS to a random model; target: the retrained model's)",
}
_SUBSET_STREAM = 0xE7A


def _check_loaders(train_loaders: Mapping[str, Any], test_loaders: Mapping[str, Any]) -> None:
    for key, loaders in (("Retain", train_loaders), ("Forget", train_loaders), ("Test", test_loaders)):
        if not isinstance(loaders, Mapping) or key not in loaders:
            where = "train_loaders" if key != "Test" else "test_loaders"
            raise ValueError(f"{where} must contain {key!r} (the dicts UnlearnDataSetup returns)")


class UnlearningEvaluator:
    """RA, FA, TA, UG, MIA_Efficiency and ZRF of ``unlearned_model`` (a RobModel); see the module docstring.

    ``n_limit``: samples per set (None: all). ``seed``: the subsets, the MIA's balancing and ZRF's
    random model. ``device`` is accepted for compatibility (the model's device is used).
    """

    def __init__(
        self,
        unlearned_model: RobModel,
        train_loaders: Mapping[str, Iterable],
        test_loaders: Mapping[str, Iterable],
        retrained_model: RobModel | None = None,
        n_limit: int | None = 1000,
        device: Any = None,
        *,
        seed: int = 0,
    ) -> None:
        for name, model in (("unlearned_model", unlearned_model), ("retrained_model", retrained_model)):
            if model is not None and not isinstance(model, RobModel):
                raise TypeError(f"{name} must be a funlearn.compat RobModel, got {type(model).__name__}")
        _check_loaders(train_loaders, test_loaders)
        check_normalization(unlearned_model, train_loaders)
        self.unlearned_model, self.retrained_model = unlearned_model, retrained_model
        self.train_loaders, self.test_loaders = train_loaders, test_loaders
        self.n_limit, self.seed = n_limit, seed
        sets = {"retain": train_loaders["Retain"], "forget": train_loaders["Forget"], "test": test_loaders["Test"]}
        self.sets = {name: self._subset(name, loader) for name, loader in sets.items()}

    def _subset(self, name: str, loader: Iterable) -> Iterable:
        view = eval_view(loader)
        if self.n_limit is None:
            return view
        return fixed_subset(view, self.n_limit, fold_in(self.seed, _SUBSET_STREAM, zlib.crc32(name.encode())))

    def _predictions(self, model: RobModel, name: str) -> Predictions:
        return collect_predictions(model.fmodel, model.params, model.buffers, self.sets[name])

    def evaluate(self) -> dict[str, float]:
        """``{"RA", "FA", "TA"[, "UG"], "MIA_Efficiency", "ZRF"}`` (accuracies in %, the rest in [0, 1])."""
        model = self.unlearned_model
        preds = {name: self._predictions(model, name) for name in self.sets}
        results = {"RA": accuracy_percent(preds["retain"]), "FA": accuracy_percent(preds["forget"]),
                   "TA": accuracy_percent(preds["test"])}  # fmt: skip
        if self.retrained_model is not None:
            results["UG"] = abs(accuracy_percent(self._predictions(self.retrained_model, "retain")) - results["RA"])
        results["MIA_Efficiency"] = mia_efficacy(preds["retain"], preds["forget"], preds["test"], seed=self.seed).efficacy / 100.0
        random_params, random_buffers = random_init(model.fmodel, self.seed, device=model.device)
        random_forget = collect_predictions(model.fmodel, random_params, random_buffers, self.sets["forget"])
        results["ZRF"] = zrf_score(preds["forget"], random_forget)
        return results

    def print_report(self, results: Mapping[str, float] | None = None) -> None:
        """Print the results with the direction each metric should move (see the module docstring)."""
        results = self.evaluate() if results is None else results
        lines = [f"  {_LABELS[k]}: {results[k]:.4f}" for k in METRIC_ORDER if k in results]
        width = max(len(line) for line in lines)
        print("=" * width, f"{'Unlearning Evaluation Report':^{width}}", "=" * width, *lines, "=" * width, sep="\n")


def compare(
    models: Mapping[str, RobModel],
    train_loaders: Mapping[str, Iterable],
    test_loaders: Mapping[str, Iterable],
    retrained_model: RobModel | None = None,
    n_limit: int | None = 1000,
    device: Any = None,
    verbose: bool = True,
    *,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{name: UnlearningEvaluator(model, ...).evaluate()}`` for every model, on the same subsets."""
    suite = BenchmarkSuite(train_loaders, test_loaders, retrained_model, n_limit, device, seed=seed)
    suite.add_many(models, verbose=verbose)
    return suite.results


def print_table(results: Mapping[str, Mapping[str, float]], metrics: list[str] | None = None,
                name_w: int = 18, col_w: int = 16) -> None:  # fmt: skip
    """Print ``compare``'s results, one row per model (``N/A`` for a metric not computed)."""
    keys = list(metrics) if metrics else METRIC_ORDER
    header = f"{'Method':<{name_w}}" + "".join(f"{k:>{col_w}}" for k in keys)
    print("=" * len(header), f"{'Unlearning Benchmark Results':^{len(header)}}", "=" * len(header), header,
          "-" * len(header), sep="\n")  # fmt: skip
    for name, values in results.items():
        row = f"{name:<{name_w}}"
        for k in keys:
            suffix, digits = _FORMAT.get(k, ("", 4))
            row += f"{values[k]:>{col_w - len(suffix)}.{digits}f}{suffix}" if k in values else f"{'N/A':>{col_w}}"
        print(row)
    print("=" * len(header))
    print("MIA_Efficiency, ZRF and FA: closest to the retrained model is best (not lowest or highest).")


def to_dataframe(results: Mapping[str, Mapping[str, float]], metrics: list[str] | None = None) -> Any:
    """A pandas DataFrame (rows: models), or None with a warning when pandas is not installed."""
    try:
        import pandas as pd
    except ImportError:
        warnings.warn("pandas is not installed; returning None", stacklevel=2)
        return None
    keys = list(metrics) if metrics else METRIC_ORDER
    frame = pd.DataFrame(results).T
    return frame[[k for k in keys if k in frame.columns] + [c for c in frame.columns if c not in keys]]


class BenchmarkSuite:
    """Evaluate models one at a time (``add``) on the same fixed subsets; ``print_table`` at any point."""

    def __init__(self, train_loaders: Mapping[str, Iterable], test_loaders: Mapping[str, Iterable],
                 retrained_model: RobModel | None = None, n_limit: int | None = 1000, device: Any = None,
                 *, seed: int = 0) -> None:  # fmt: skip
        _check_loaders(train_loaders, test_loaders)
        self.train_loaders, self.test_loaders = train_loaders, test_loaders
        self.retrained_model, self.n_limit, self.device, self.seed = retrained_model, n_limit, device, seed
        self.results: dict[str, dict[str, float]] = {}

    def add(self, name: str, model: RobModel, verbose: bool = True) -> dict[str, float]:
        if verbose:
            print(f"[benchmarks] Evaluating: {name}")
        evaluator = UnlearningEvaluator(model, self.train_loaders, self.test_loaders, self.retrained_model,
                                        self.n_limit, self.device, seed=self.seed)  # fmt: skip
        self.results[name] = evaluator.evaluate()
        return self.results[name]

    def add_many(self, models: Mapping[str, RobModel], verbose: bool = True) -> None:
        for name, model in models.items():
            self.add(name, model, verbose=verbose)

    def print_table(self, metrics: list[str] | None = None) -> None:
        print_table(self.results, metrics=metrics)

    def to_dataframe(self, metrics: list[str] | None = None) -> Any:
        return to_dataframe(self.results, metrics=metrics)
