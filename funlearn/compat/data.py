"""torchunlearn's ``UnlearnDataSetup`` and ``MergedLoaders`` on funlearn's datasets, scenarios and loaders.

Data stay in pixel space [0, 1]: ``mean``/``std`` given to ``UnlearnDataSetup`` are *not* applied to
the data (torchunlearn normalised in the transform); the :class:`~funlearn.compat.robmodel.RobModel`
applies its ``normalization_used`` inside the model. Give both the same statistics, as torchunlearn
scripts do; the trainers and the evaluator warn when the loaders' statistics differ from the model's.

Differences from torchunlearn, on purpose:

* random forgetting draws exactly ``round(ratio * N)`` samples; stratified means exact per-class
  quotas (largest remainder), drawn independently per class from the seed, never the global NumPy
  RNG (torchunlearn drew ``floor(floor(N ratio) / K)`` per class with the same positions in every
  class, D1-D3); ``stratified=False`` works (D4);
* the class-wise Forget loader never drops its last batch (D7); the Retain loader follows
  ``drop_last_train`` as in torchunlearn;
* ``train_shuffle_and_transform=True`` shuffles each epoch from the seed and applies crop+flip for
  the datasets that use it (CIFAR, TinyImageNet; none for the MNIST family);
* :class:`MergedLoaders` reshuffles the shorter loader on every pass instead of replaying a cached
  first pass (D5).
"""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import replace
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from funlearn.data.bundle import DatasetBundle, load_dataset
from funlearn.data.loaders import TensorLoader
from funlearn.data.merged import merged_batches
from funlearn.data.scenarios import Split, classwise_split, random_split
from funlearn.data.streams import Stream
from funlearn.random import fold_in

__all__ = ["UnlearnDataSetup", "UnlearnLoaders", "MergedLoaders", "eval_view", "check_normalization"]


class UnlearnLoaders(dict):
    """The dict torchunlearn returns (``{"Retain", "Forget"}`` or ``{"Test"[, "Test(forget)"]}``),
    which also remembers its ``split``, the data's ``mean``/``std`` and, on the training side, the
    matching test loaders (``test``), so closed-form methods can pick a held-out set themselves."""

    def __init__(
        self,
        loaders: Mapping[str, Iterable],
        *,
        split: Split,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        test: UnlearnLoaders | None = None,
    ) -> None:
        super().__init__(loaders)
        self.split, self.mean, self.std, self.test = split, mean, std, test


class UnlearnDataSetup:
    """Forget/retain/test loaders of ``data_name`` in torchunlearn's shapes.

    ``data_name``: ``"CIFAR10"``, ``"CIFAR100"``, ``"TinyImageNet"``, ``"MNIST"``, ``"FashionMNIST"``,
    ``"KMNIST"`` (or any name of :func:`funlearn.available_datasets`). ``n_classes`` is checked
    against the dataset. ``mean``/``std`` are recorded, not applied (see the module docstring).
    ``root``: the data directory (else ``$FUNLEARN_DATA``, then system locations such as the Debian
    Fashion-MNIST package). ``train_subset``/``test_subset``: keep a fixed stratified random subset of
    that many training/test samples (seed 0) before splitting, for quick runs and tests.
    ``device``: where the loaders keep the data (e.g. ``"cuda"``: no host-to-device copies).
    """

    def __init__(
        self,
        data_name: str,
        n_classes: int,
        mean: Iterable[float],
        std: Iterable[float],
        *,
        root: str | os.PathLike | None = None,
        train_subset: int | None = None,
        test_subset: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(data_name, str):
            raise TypeError(f"data_name must be a string such as 'CIFAR10', got {type(data_name).__name__}")
        for name, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
                raise ValueError(f"{name} must be an int >= 2 (a number of samples) or None, got {value!r}")
        self.data_name, self.n_classes = data_name, n_classes
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.root, self.device = root, device
        self.train_subset, self.test_subset = train_subset, test_subset
        self._bundle: DatasetBundle | None = None

    @property
    def bundle(self) -> DatasetBundle:
        """The dataset (loaded on first use, subset if asked)."""
        if self._bundle is None:
            bundle = load_dataset(self.data_name, self.root, device=self.device)
            if bundle.num_classes != self.n_classes:
                raise ValueError(f"{self.data_name} has {bundle.num_classes} classes but n_classes={self.n_classes}")
            self._bundle = _subset(bundle, self.train_subset, self.test_subset)
        return self._bundle

    def _train_loader(self, indices: torch.Tensor, stream: Stream, batch_size: int, shuffle: bool,
                      drop_last: bool, seed: int) -> TensorLoader:  # fmt: skip
        data = self.bundle
        return TensorLoader(
            data.train_x, data.train_y, batch_size, shuffle=shuffle, drop_last=drop_last,
            augment="crop_flip" if shuffle and data.augment else None, seed=fold_in(seed, stream), indices=indices,
        )  # fmt: skip

    def _test_loader(self, batch_size: int, indices: torch.Tensor | None) -> TensorLoader:
        data = self.bundle
        return TensorLoader(data.test_x, data.test_y, batch_size, shuffle=False, indices=indices)

    def _pack(self, split: Split, retain: TensorLoader, forget: TensorLoader,
              tests: dict[str, TensorLoader]) -> tuple[UnlearnLoaders, UnlearnLoaders]:  # fmt: skip
        stats = {"split": split, "mean": self.mean, "std": self.std}
        test = UnlearnLoaders(tests, **stats)
        return UnlearnLoaders({"Retain": retain, "Forget": forget}, test=test, **stats), test

    def get_loaders(
        self, batch_size: int, train_shuffle_and_transform: bool = False, drop_last_train: bool = True, seed: int = 0
    ) -> tuple[TensorLoader, TensorLoader]:
        """``(train_loader, test_loader)`` over the full training and test sets."""
        _check_batch_size(batch_size)
        data = self.bundle
        train = TensorLoader(
            data.train_x, data.train_y, batch_size, shuffle=train_shuffle_and_transform, drop_last=drop_last_train,
            augment="crop_flip" if train_shuffle_and_transform and data.augment else None,
            seed=fold_in(seed, Stream.RETAIN_LOADER),
        )  # fmt: skip
        return train, self._test_loader(batch_size, None)

    def get_loaders_for_rand(
        self,
        batch_size: int,
        ratio: float,
        stratified: bool = True,
        train_shuffle_and_transform: bool = False,
        drop_last_train: bool = True,
        seed: int = 42,
    ) -> tuple[UnlearnLoaders, UnlearnLoaders]:
        """Random forgetting of ``round(ratio * N)`` training samples: ``({"Retain", "Forget"}, {"Test"})``.

        ``stratified``: exact per-class quotas (see :func:`funlearn.random_split`). Retain drops its
        last incomplete batch when ``drop_last_train``; Forget never does; Test is unshuffled.
        """
        _check_batch_size(batch_size)
        split = random_split(self.bundle.train_y, ratio, stratified=stratified, seed=seed)
        flag = bool(train_shuffle_and_transform)
        retain = self._train_loader(split.retain, Stream.RETAIN_LOADER, batch_size, flag, drop_last_train, seed)
        forget = self._train_loader(split.forget, Stream.FORGET_LOADER, batch_size, flag, False, seed)
        return self._pack(split, retain, forget, {"Test": self._test_loader(batch_size, None)})

    def get_loaders_for_classwise(
        self,
        batch_size: int,
        omit_label: int,
        train_shuffle_and_transform: bool = False,
        drop_last_train: bool = True,
        seed: int = 0,
    ) -> tuple[UnlearnLoaders, UnlearnLoaders]:
        """Forgetting the class ``omit_label``: ``({"Retain", "Forget"}, {"Test", "Test(forget)"})``.

        ``Test`` holds the test samples of the kept classes, ``Test(forget)`` those of ``omit_label``.
        Labels are not remapped (the model keeps ``n_classes`` outputs).
        """
        _check_batch_size(batch_size)
        if isinstance(omit_label, bool) or not isinstance(omit_label, numbers.Integral):
            raise ValueError(f"omit_label must be an int class id, got {omit_label!r}")
        data = self.bundle
        split = classwise_split(data.train_y, int(omit_label), test_labels=data.test_y)
        flag = bool(train_shuffle_and_transform)
        retain = self._train_loader(split.retain, Stream.RETAIN_LOADER, batch_size, flag, drop_last_train, seed)
        forget = self._train_loader(split.forget, Stream.FORGET_LOADER, batch_size, flag, False, seed)
        tests = {"Test": self._test_loader(batch_size, split.test_retain),
                 "Test(forget)": self._test_loader(batch_size, split.test_forget)}  # fmt: skip
        return self._pack(split, retain, forget, tests)

    def __repr__(self) -> str:
        return f"UnlearnDataSetup({self.data_name!r}, n_classes={self.n_classes}, mean={self.mean}, std={self.std})"


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _subset(bundle: DatasetBundle, n_train: int | None, n_test: int | None) -> DatasetBundle:
    """``bundle`` with fixed stratified random subsets of its training and test sets (seed 0)."""

    def pick(y: torch.Tensor, n: int | None) -> torch.Tensor | None:
        if n is None or n >= y.numel():
            return None
        return random_split(y.cpu(), count=n, seed=0).forget.to(y.device)

    train, test = pick(bundle.train_y, n_train), pick(bundle.test_y, n_test)
    if train is not None:
        bundle = replace(bundle, train_x=bundle.train_x[train], train_y=bundle.train_y[train])
    if test is not None:
        bundle = replace(bundle, test_x=bundle.test_x[test], test_y=bundle.test_y[test])
    return bundle


def eval_view(loader: Iterable) -> Iterable:
    """The loader's samples in index order without augmentation (a :class:`TensorLoader` copy that
    does not drop its last batch), or ``loader`` itself when it is not a TensorLoader."""
    if not isinstance(loader, TensorLoader):
        return loader
    return TensorLoader(loader.x, loader.y, loader.batch_size, shuffle=False, indices=loader.indices)


class MergedLoaders:
    """torchunlearn's ``MergedLoaders({"Retain": ..., "Forget": ...})``: one step is one batch of each.

    ``len()`` is the longer loader's length (one epoch = one pass over it). Iterating yields
    ``{"Retain": (x, y), "Forget": (x, y)}`` in the dict's key order. The shorter loader starts a
    new, reshuffled (and re-augmented) pass whenever it runs out, keyed by ``seed``, the epoch and the
    pass; torchunlearn replayed a cached copy of its first pass instead (D5). Backed by
    :func:`funlearn.merged_batches`; the trainers run on :meth:`batches` directly. ``source`` is
    the dict it was built from (an :class:`UnlearnLoaders` keeps its statistics there).
    """

    KEYS = ("Retain", "Forget")

    def __init__(self, loaders: Mapping[str, Iterable], seed: int = 0) -> None:
        if not isinstance(loaders, Mapping) or set(loaders) != set(self.KEYS):
            got = sorted(loaders) if isinstance(loaders, Mapping) else type(loaders).__name__
            raise ValueError(
                f"MergedLoaders needs a dict with exactly the keys 'Retain' and 'Forget' (got {got}); "
                "other splits (e.g. 'Adjacent') are not supported"
            )
        for name, loader in loaders.items():
            if not hasattr(loader, "__len__") or len(loader) == 0:
                raise ValueError(f"the {name} loader has no batches; lower batch_size or drop_last_train=False")
        self.loaders, self.seed, self.source = dict(loaders), seed, loaders
        self.order = tuple(loaders)
        self._steps = self.batches()

    def __len__(self) -> int:
        return max(len(loader) for loader in self.loaders.values())

    def batches(self, steps_per_epoch: int | None = None) -> Any:
        """funlearn's ``{"forget": ..., "retain": ...}`` steps, ``steps_per_epoch`` (default ``len(self)``) per epoch."""
        return merged_batches(self.loaders["Forget"], self.loaders["Retain"],
                              epoch_length=steps_per_epoch or len(self), seed=self.seed)  # fmt: skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for step in self._steps:
            yield {key: step[key.lower()] for key in self.order}

    def __repr__(self) -> str:
        return f"MergedLoaders({', '.join(f'{k}={len(v)} batches' for k, v in self.loaders.items())}, seed={self.seed})"


def check_normalization(rmodel: Any, loaders: Any) -> None:
    """Warn when ``loaders`` (an :class:`UnlearnLoaders`, or a :class:`MergedLoaders` of one) were set up
    with a mean/std other than the ``normalization_used`` of ``rmodel`` (which is what is applied)."""
    source = loaders.source if isinstance(loaders, MergedLoaders) else loaders
    if not isinstance(source, UnlearnLoaders):
        return
    for name in ("mean", "std"):
        data = torch.tensor(getattr(source, name))
        model = getattr(rmodel, name).detach().float().cpu()
        if not (data.shape == model.shape and bool(torch.allclose(data, model))):
            warnings.warn(
                f"the data were set up with {name}={list(getattr(source, name))} but the RobModel normalises with "
                f"{name}={model.tolist()} (its normalization_used, applied inside the model to pixel-space data); "
                "give the RobModel the same statistics as UnlearnDataSetup",
                stacklevel=3,
            )
            return
