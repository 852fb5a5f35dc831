"""Merged forget/retain batching: one step sees ``{"forget": (x, y), "retain": (x, y)}``.

An epoch has ``epoch_length`` steps: ``len(retain_loader)`` (``"retain"``), ``len(forget_loader)``
(``"forget"``) or a fixed number. A loader with ``n`` batches serves step ``s`` with batch
``s mod n`` of its pass ``p = s // n``; each pass is a fresh reshuffle (and fresh augmentation)
keyed by ``(seed, epoch, p)``, never a replay of a cached first pass (torchunlearn's
``MergedLoaders`` defect D5). Step ``s`` of epoch ``e`` is therefore a pure function of
``(seed, e, s)`` for :class:`~funlearn.data.TensorLoader` inputs, and ``iter_from(e, s)`` resumes
there without replaying earlier steps.

``torch.utils.data.DataLoader`` inputs work too: one whose ``batch_sampler`` is a
:class:`~funlearn.data.BatchSampler` is keyed exactly like a TensorLoader; any other is re-iterated
for each pass (its sampler's ``set_epoch``, if any, gets a distinct number per epoch and pass) and
skipped by consuming batches.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Iterator
from typing import Any

from funlearn.data.loaders import TensorLoader
from funlearn.data.sampling import BatchSampler
from funlearn.data.streams import Stream
from funlearn.random import fold_in

__all__ = ["MergedBatches", "merged_batches"]


def _open_pass(loader: Iterable, epoch: tuple[int, ...], pass_index: int, start_batch: int) -> Iterator:
    """An iterator over pass ``pass_index`` of ``loader`` for the epoch key, from ``start_batch``."""
    if isinstance(loader, TensorLoader):
        return loader.batches(epoch, pass_index=pass_index, start_batch=start_batch)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if isinstance(batch_sampler, BatchSampler):
        batch_sampler.set_epoch(epoch, pass_index=pass_index, start_batch=start_batch)
        return iter(loader)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(fold_in(0, *epoch, pass_index) % 2**31)
    return itertools.islice(iter(loader), start_batch, None)


class _Stream:
    """One loader's batches for consecutive steps of an epoch, opening a new pass when one ends."""

    def __init__(self, name: str, loader: Iterable, epoch: tuple[int, ...]) -> None:
        self.name, self.loader, self.epoch = name, loader, epoch
        self.length = len(loader)
        self.pass_index: int | None = None
        self.iterator: Iterator = iter(())

    def next(self, step: int) -> Any:
        """The batch for ``step``: batch ``step mod n`` of pass ``step // n`` (opened on demand)."""
        pass_index, batch = divmod(step, self.length)
        if pass_index != self.pass_index:
            self.pass_index = pass_index
            self.iterator = _open_pass(self.loader, self.epoch, pass_index, batch)
        try:
            return next(self.iterator)
        except StopIteration:
            raise RuntimeError(
                f"{self.name} loader ended before its len() = {self.length} batches (pass {pass_index})"
            ) from None


class MergedBatches:
    """Steps ``{"forget": batch, "retain": batch}``; see the module docstring for the semantics.

    ``len()`` is the number of steps per epoch. ``set_epoch(e)`` pins the next iteration to epoch
    ``e``; without it each iteration moves on to the next epoch. ``iter_from(e, s)`` yields epoch
    ``e`` from step ``s`` on.
    """

    def __init__(
        self,
        forget_loader: Iterable,
        retain_loader: Iterable,
        *,
        epoch_length: str | int = "retain",
        seed: int = 0,
    ) -> None:
        self.loaders = {"forget": forget_loader, "retain": retain_loader}
        for name, loader in self.loaders.items():
            if not hasattr(loader, "__len__") or len(loader) == 0:
                raise ValueError(
                    f"{name}_loader has no batches (len 0 or no len()); lower batch_size, drop_last=False "
                    "or pass a non-empty loader"
                )
        if epoch_length in ("retain", "forget"):
            self.steps = len(self.loaders[epoch_length])
        elif (
            isinstance(epoch_length, numbers.Integral)
            and not isinstance(epoch_length, bool)
            and epoch_length > 0
        ):
            self.steps = int(epoch_length)
        else:
            raise ValueError(
                f"epoch_length must be 'retain', 'forget' or a positive int (got {epoch_length!r})"
            )
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an int (got {seed!r})")
        self.epoch_length = epoch_length
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch``."""
        self.epoch = int(epoch)

    def iter_from(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, Any]]:
        """Epoch ``epoch`` from step ``start_step`` on."""
        if not 0 <= start_step <= self.steps:
            raise ValueError(f"start_step={start_step} must lie in [0, {self.steps}] (steps per epoch)")
        epoch_id = (int(Stream.MERGED), self.seed, int(epoch))
        streams = [_Stream(name, loader, epoch_id) for name, loader in self.loaders.items()]
        return self._generate(streams, start_step)

    def _generate(self, streams: list[_Stream], start_step: int) -> Iterator[dict[str, Any]]:
        for step in range(start_step, self.steps):
            yield {stream.name: stream.next(step) for stream in streams}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_from(epoch)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(loader)} batches" for name, loader in self.loaders.items())
        return f"MergedBatches({sizes}, steps={self.steps}, seed={self.seed})"


def merged_batches(
    forget_loader: Iterable, retain_loader: Iterable, *, epoch_length: str | int = "retain", seed: int = 0
) -> MergedBatches:
    """Merge a forget and a retain loader into one iterator of ``{"forget", "retain"}`` steps."""
    return MergedBatches(forget_loader, retain_loader, epoch_length=epoch_length, seed=seed)
