"""torchunlearn's ``FisherForget`` and ``Influence`` on funlearn's second-order toolkit.

``unlearner.fit(train_loaders, alphas=..., repeat=..., save_path=...)`` computes the candidates
with :func:`funlearn.fisher_forget` / :func:`funlearn.influence` and writes the chosen one into the
RobModel. What differs from torchunlearn, on purpose:

* **Estimators.** FisherForget uses the per-sample true Fisher ``(1/n) Σ_i Σ_c p_ic (∇ log p_ic)²``
  (torchunlearn squared batch-mean gradients, N1), finds the output layer as the ``nn.Linear`` that
  produces the logits (N2) and draws the noise from ``seed`` (N5). Influence takes a damped Newton
  step ``θ - α (F + λI)⁻¹ ∇L_R`` with a real inverse: by default the exact WoodFisher (Woodbury)
  inverse of ``woodfisher_samples`` per-sample gradients (torchunlearn's recursion only moved along
  the first sample's gradient, N7), or ``curvature="ggn"`` solved by conjugate gradient for large
  models. Influence is deterministic, so ``repeat`` is ignored; its ``alpha`` multiplies the Newton
  step (1 = the full step): torchunlearn's 1e-9..1e-6 leave the model unchanged in both libraries
  (N8), and the default grid is (0.25, 0.5, 1, 2).
* **Selection.** A candidate is not chosen by ``RA - FA`` on the training loaders (N6), which always
  rewards destroying forget accuracy. Each candidate is evaluated on fixed random subsets of
  ``n_limit`` samples of Retain, Forget and a held-out Test set, and scored by
  :class:`funlearn.RandomForgettingRule` (forget accuracy closest to test accuracy, retain accuracy
  within 2 points of the original) or, for class-wise forgetting (``omit_label``, or loaders from
  ``get_loaders_for_classwise``), :class:`funlearn.ClasswiseRule` (lowest forget accuracy, retain
  within 2 points). The Test set is ``test_loaders["Test"]`` if given, else the test loaders that
  ``UnlearnDataSetup`` returned with ``train_loaders``.
* **Files.** ``save_path`` gets ``best.pth`` (torchunlearn's layout) and ``candidates.csv`` (every
  candidate's accuracies and score), not one weight file per candidate.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from funlearn.compat.data import UnlearnLoaders, check_normalization, eval_view
from funlearn.compat.robmodel import RobModel, write_state
from funlearn.engine.evaluate import fixed_subset
from funlearn.io import atomic_write_text
from funlearn.methods.fisher_forget import fisher_forget
from funlearn.methods.influence import influence
from funlearn.random import fold_in
from funlearn.second_order.selection import ClosedFormResult

__all__ = ["FisherForget", "Influence"]

_SELECTION_STREAM = 0xC5E  # folded with the set's name into the seed of a selection subset


class _ClosedForm:
    """Shared ``fit`` plumbing: evaluation subsets, forgotten classes, output files."""

    def __init__(self, rmodel: RobModel, device: Any = None) -> None:
        if not isinstance(rmodel, RobModel):
            raise TypeError(f"rmodel must be a funlearn.compat RobModel, got {type(rmodel).__name__}")
        if device is not None:
            rmodel.to(device)
        self.rmodel = rmodel
        self.result: ClosedFormResult | None = None

    def _prepare(self, train_loaders: Mapping[str, Iterable], test_loaders: Mapping[str, Iterable] | None,
                 omit_label: int | None, n_limit: int, seed: int, save_path: Any,
                 overwrite: bool) -> tuple[dict[str, Iterable], tuple[int, ...] | None]:  # fmt: skip
        if not isinstance(train_loaders, Mapping) or not {"Retain", "Forget"} <= set(train_loaders):
            raise ValueError("train_loaders must be the dict {'Retain': ..., 'Forget': ...} of UnlearnDataSetup")
        if save_path is not None and Path(save_path).exists() and any(Path(save_path).iterdir()) and not overwrite:
            raise FileExistsError(f"save_path={str(save_path)!r} is not empty; pass overwrite=True or a new path")
        check_normalization(self.rmodel, train_loaders)
        if omit_label is not None:
            classes: tuple[int, ...] | None = (int(omit_label),)
        elif isinstance(train_loaders, UnlearnLoaders):
            classes = train_loaders.split.forget_classes
        else:
            classes = None
        if test_loaders is None and isinstance(train_loaders, UnlearnLoaders):
            test_loaders = train_loaders.test
        sets = {"retain": train_loaders["Retain"], "forget": train_loaders["Forget"]}
        if test_loaders is not None and "Test" in test_loaders:
            sets["test"] = test_loaders["Test"]
        elif classes is None:
            raise ValueError("random forgetting chooses alpha with a held-out set: pass test_loaders={'Test': ...} "
                             "(or omit_label=c for class-wise forgetting)")  # fmt: skip
        eval_data = {name: fixed_subset(eval_view(loader), n_limit, fold_in(seed, _SELECTION_STREAM, zlib.crc32(name.encode())))
                     for name, loader in sets.items()}  # fmt: skip
        return eval_data, classes

    def _finish(self, result: ClosedFormResult, save_path: Any) -> ClosedFormResult:
        self.rmodel.params, self.rmodel.buffers = result.params, result.buffers
        self.result = result
        print(result)
        if save_path is not None:
            Path(save_path).mkdir(parents=True, exist_ok=True)
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=list(result.table[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(result.table)
            atomic_write_text(Path(save_path) / "candidates.csv", out.getvalue())
            write_state(Path(save_path) / "best.pth", self.rmodel.state_dict(), result.table[result.best])
        return result


class FisherForget(_ClosedForm):
    """Fisher forgetting (Golatkar et al., CVPR 2020): Gaussian noise shaped by the retain Fisher.

    ``fit(train_loaders, alphas, repeat, omit_label, save_path, overwrite)`` as torchunlearn, plus
    ``test_loaders`` (the held-out set of the selection), ``n_limit`` (samples per evaluation set),
    ``fisher_samples`` (retain samples for the Fisher; None: the whole Retain loader), ``seed``
    and ``progress``. Returns :class:`funlearn.ClosedFormResult`. See the module docstring.
    """

    def fit(
        self,
        train_loaders: Mapping[str, Iterable],
        alphas: Sequence[float] = (1e-9, 1e-8, 1e-7, 1e-6),
        repeat: int = 1,
        omit_label: int | None = None,
        save_path: str | os.PathLike | None = None,
        overwrite: bool = False,
        *,
        test_loaders: Mapping[str, Iterable] | None = None,
        n_limit: int = 1000,
        fisher_samples: int | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> ClosedFormResult:
        eval_data, classes = self._prepare(train_loaders, test_loaders, omit_label, n_limit, seed, save_path, overwrite)
        retain = eval_view(train_loaders["Retain"])
        if fisher_samples is not None:
            retain = fixed_subset(retain, fisher_samples, fold_in(seed, _SELECTION_STREAM, 0))
        r = self.rmodel
        result = fisher_forget(r.fmodel, r.params, r.buffers, retain, eval_data=eval_data, alphas=list(alphas),
                               repeats=repeat, seed=seed, forget_classes=classes, progress=progress)  # fmt: skip
        return self._finish(result, save_path)


class Influence(_ClosedForm):
    """Newton/influence removal: ``θ' = θ - α (C + damping I)⁻¹ ∇L_R(θ)``, ``α`` chosen on evaluation data.

    ``fit(train_loaders, alphas, repeat, save_path, overwrite)`` as torchunlearn (``repeat`` is
    ignored: the step is deterministic), plus ``test_loaders``, ``omit_label``, ``n_limit``,
    ``curvature`` (``"woodfisher"`` by default, ``"ggn"``, ``"empirical_fisher"`` or ``"hessian"``),
    ``woodfisher_samples`` (torchunlearn's N = 1000), ``damping``, ``l2`` (the original training's
    weight decay) and ``progress``. ``damping`` (default 0.1) regularises the inverse: directions the
    sampled gradients do not span are scaled by ``1/damping`` (at 1e-3 the step diverged on a LeNet
    that had not fully converged). The WoodFisher inverse stores ``woodfisher_samples`` gradients
    (``N x P`` floats): beyond 4 GiB it stops before any work and asks for ``curvature="ggn"``.
    """

    WOODFISHER_BYTES = 4 << 30

    def fit(
        self,
        train_loaders: Mapping[str, Iterable],
        alphas: Sequence[float] | None = None,
        repeat: int = 1,
        save_path: str | os.PathLike | None = None,
        overwrite: bool = False,
        *,
        test_loaders: Mapping[str, Iterable] | None = None,
        omit_label: int | None = None,
        n_limit: int = 1000,
        curvature: str = "woodfisher",
        woodfisher_samples: int = 1000,
        damping: float = 0.1,
        l2: float = 0.0,
        seed: int = 0,
        progress: bool = False,
    ) -> ClosedFormResult:
        alphas = [0.25, 0.5, 1.0, 2.0] if alphas is None else list(alphas)
        if alphas and max(abs(a) for a in alphas) < 1e-3:
            warnings.warn(
                f"alphas={alphas} scale a Newton step; values this small leave the model essentially unchanged "
                "(as torchunlearn's defaults did). Try alphas=[0.25, 0.5, 1, 2].",
                stacklevel=2,
            )
        eval_data, classes = self._prepare(train_loaders, test_loaders, omit_label, n_limit, seed, save_path, overwrite)
        r = self.rmodel
        n_params = sum(p.numel() for p in r.params.values())
        if curvature == "woodfisher" and woodfisher_samples * n_params * 4 > self.WOODFISHER_BYTES:
            raise ValueError(
                f"the WoodFisher inverse needs {woodfisher_samples} x {n_params} floats "
                f"({woodfisher_samples * n_params * 4 / 2**30:.1f} GiB); pass curvature='ggn' (conjugate gradient) "
                "or fewer woodfisher_samples"
            )
        retain = eval_view(train_loaders["Retain"])
        options: dict[str, Any] = {"woodfisher_samples": woodfisher_samples} if curvature == "woodfisher" else {}
        curvature_data = None
        if curvature == "woodfisher":
            curvature_data = fixed_subset(retain, woodfisher_samples, fold_in(seed, _SELECTION_STREAM, 1))
        result = influence(r.fmodel, r.params, r.buffers, retain, eval_data=eval_data, alphas=alphas,
                           curvature=curvature, damping=damping, l2=l2, curvature_data=curvature_data,
                           forget_classes=classes, progress=progress, **options)  # fmt: skip
        return self._finish(result, save_path)
