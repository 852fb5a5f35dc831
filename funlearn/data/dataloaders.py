"""The ``torch.utils.data.DataLoader`` path, for datasets read lazily from disk.

For data that does not fit in memory (e.g. :class:`~funlearn.data.TinyImageNetFolder`),
:func:`split_dataloaders` builds the loaders :func:`~funlearn.data.split_loaders` builds, as
``DataLoader`` s over a map-style dataset whose items are ``(image, label)`` with a uint8 (or float
in [0, 1]) ``(C, H, W)`` image. Batches come from a :class:`~funlearn.data.BatchSampler` and are
assembled, converted to float32 and crop+flip augmented per batch (in the worker processes when
``num_workers > 0``) with the batch's own key: for the same seed and data they are exactly the
batches of the in-memory path, and no global RNG is involved.
"""

from __future__ import annotations

import numbers

import torch
from torch.utils.data import DataLoader, Dataset

from funlearn.data.augment import PADDING, crop_flip, crop_flip_params
from funlearn.data.loaders import Batch, to_float
from funlearn.data.sampling import BatchSampler, KeyedIndices
from funlearn.data.scenarios import Split
from funlearn.data.streams import Stream
from funlearn.random import fold_in, key

__all__ = ["split_dataloaders"]


class _BatchView(Dataset):
    """Rows ``indices`` of ``dataset``, fetched a whole batch at a time (``__getitems__``)."""

    def __init__(
        self, dataset: Dataset, indices: torch.Tensor | None, sampler: BatchSampler, augment: bool
    ) -> None:
        self.dataset, self.indices, self.sampler, self.augment = dataset, indices, sampler, augment

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else self.indices.numel()

    def __getitems__(self, batch: KeyedIndices) -> Batch:
        rows = batch if self.indices is None else self.indices[batch].tolist()
        samples = [self.dataset[i] for i in rows]
        if not samples:  # a rank's empty last batch (see funlearn.data.sampling)
            image = torch.as_tensor(self.dataset[0][0])
            return to_float(image.new_empty((0, *image.shape))), torch.empty(0, dtype=torch.int64)
        x = torch.stack([torch.as_tensor(image) for image, _ in samples])
        y = torch.tensor([int(label) for _, label in samples], dtype=torch.int64)
        if self.augment:
            s = self.sampler
            offsets, flips = crop_flip_params(
                s.seed, batch.key, batch.global_size, PADDING, s.rank, s.world_size
            )
            x = crop_flip(x, offsets, flips, PADDING)
        return to_float(x), y


def _whole_batch(batch: Batch) -> Batch:
    """collate_fn: ``__getitems__`` already returns the finished batch."""
    return batch


def split_dataloaders(
    train_set: Dataset,
    test_set: Dataset,
    split: Split,
    batch_size: int,
    *,
    seed: int = 0,
    augment: bool = True,
    num_workers: int = 0,
    eval_batch_size: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, DataLoader]:
    """DataLoaders named and batched like :func:`~funlearn.data.split_loaders`'s.

    ``"retain"``/``"forget"`` are shuffled and, with ``augment``, crop+flip augmented (padding 4;
    pass ``augment=False`` for datasets without standard augmentation, e.g. the MNIST family);
    ``"retain_eval"``, ``"forget_eval"``, ``"test"`` (and ``"test_retain"``/``"test_forget"`` for a
    class-wise split) are in index order, not augmented.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int (got {seed!r}); pass e.g. seed=0")
    if split.num_samples != len(train_set):
        raise ValueError(
            f"split covers {split.num_samples} samples but train_set has {len(train_set)}; "
            "make the split from the training labels"
        )
    eval_size = batch_size if eval_batch_size is None else eval_batch_size

    def loader(dataset: Dataset, indices: torch.Tensor | None, size: int, stream: Stream) -> DataLoader:
        train = stream in (Stream.RETAIN_LOADER, Stream.FORGET_LOADER)
        count = len(dataset) if indices is None else indices.numel()
        sampler = BatchSampler(
            count, size, shuffle=train, seed=fold_in(seed, stream), rank=rank, world_size=world_size
        )
        return DataLoader(
            _BatchView(dataset, indices, sampler, augment and train),
            batch_sampler=sampler,
            collate_fn=_whole_batch,
            num_workers=num_workers,
            generator=key(seed, Stream.WORKERS, stream),  # worker seeds, instead of the global RNG
        )

    loaders = {
        "retain": loader(train_set, split.retain, batch_size, Stream.RETAIN_LOADER),
        "forget": loader(train_set, split.forget, batch_size, Stream.FORGET_LOADER),
        "retain_eval": loader(train_set, split.retain, eval_size, Stream.EVAL_LOADER),
        "forget_eval": loader(train_set, split.forget, eval_size, Stream.EVAL_LOADER),
        "test": loader(test_set, None, eval_size, Stream.EVAL_LOADER),
    }
    if split.test_retain is not None:
        loaders["test_retain"] = loader(test_set, split.test_retain, eval_size, Stream.EVAL_LOADER)
        loaders["test_forget"] = loader(test_set, split.test_forget, eval_size, Stream.EVAL_LOADER)
    return loaders
