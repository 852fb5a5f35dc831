"""In-memory batching: :class:`TensorLoader` and the standard loaders of a split (:func:`split_loaders`).

A dataset that fits in memory (on the CPU or the GPU) is one tensor; a batch is one
``index_select`` of it, with the crop+flip augmentation done for the whole batch by one gather.
Batch ``b`` of epoch ``e`` (order, and augmentation drawn from
``key(seed, Stream.AUGMENT, e, pass, b)``) is a pure function of ``(seed, e, b)``, so a resumed run
can start at any batch. There is no per-sample Python work in the loop.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import torch

from funlearn.data.augment import PADDING, crop_flip, crop_flip_params
from funlearn.data.bundle import DatasetBundle
from funlearn.data.sampling import BatchSampler, EpochKey, IndexBatch
from funlearn.data.scenarios import Split
from funlearn.data.streams import Stream
from funlearn.random import fold_in

__all__ = ["TensorLoader", "split_loaders", "to_float"]

Batch = tuple[torch.Tensor, torch.Tensor]

CHUNK_BYTES = 4 << 20  # batches are prepared in groups of about this many bytes of float32 output


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Pixels as float32 in [0, 1]: uint8 is divided by 255, floats are cast."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


class TensorLoader:
    """Batches ``(x_float32, y)`` of ``x[indices]``, ``y[indices]`` (all samples when ``indices`` is None).

    ``x`` is ``(N, C, H, W)`` (or ``(N, ...)`` without augmentation), uint8 or float in [0, 1];
    batches are float32 in [0, 1] on ``x``'s device (moved to ``device`` once, when given).
    ``augment="crop_flip"`` applies random crop with ``padding`` and horizontal flip. ``seed`` fixes
    every epoch's order and augmentation. ``rank``/``world_size`` shard every step's global batch
    of ``batch_size * world_size`` samples (see :mod:`funlearn.data.sampling`). ``len()`` is the
    number of batches per epoch. Batches are prepared a few at a time and returned as slices of
    one tensor (disjoint views; in-place changes to one batch do not touch another).

    ``set_epoch(e)`` pins the next iteration to epoch ``e``; without it every iteration moves to a
    fresh pass, so a plain ``for`` loop over epochs reshuffles. ``iter_from(e, b)`` starts epoch
    ``e`` at batch ``b``, yielding exactly the batches a full iteration yields from ``b`` on.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: str | None = None,
        padding: int = PADDING,
        seed: int = 0,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
        indices: torch.Tensor | None = None,
    ) -> None:
        if x.dim() < 1 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x {tuple(x.shape)} and y {tuple(y.shape)} must have the same first dimension N, y 1-D"
            )
        if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
            raise ValueError(f"x must be uint8 pixels or float in [0, 1] (got {x.dtype})")
        if augment not in (None, "crop_flip"):
            raise ValueError(f"augment must be None or 'crop_flip' (got {augment!r})")
        if augment is not None and x.dim() != 4:
            raise ValueError(f"augment='crop_flip' needs images (N, C, H, W) (got x {tuple(x.shape)})")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an int >= 0 (got {padding!r})")
        self.x = x if device is None else x.to(device)
        self.y = y.to(self.x.device)
        if indices is not None:
            indices = torch.as_tensor(indices)
            if indices.dim() != 1 or indices.dtype.is_floating_point or indices.dtype == torch.bool:
                raise ValueError(
                    f"indices must be a 1-D integer tensor (got {indices.dtype} {tuple(indices.shape)})"
                )
            if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= x.shape[0]):
                raise ValueError(f"indices must lie in [0, {x.shape[0]}) (the rows of x)")
            indices = indices.to(self.x.device, torch.int64)
        self.indices = indices
        self.augment = augment
        self.padding = padding
        self.seed = seed
        self.sampler = BatchSampler(
            x.shape[0] if indices is None else indices.numel(),
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )

    @property
    def num_samples(self) -> int:
        """Samples per epoch over all ranks."""
        return self.sampler.num_samples

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: EpochKey, *, start_batch: int = 0) -> None:
        """Make the next iteration yield epoch ``epoch`` from batch ``start_batch``."""
        self.sampler.set_epoch(epoch, start_batch=start_batch)

    def batches(self, epoch: EpochKey, *, pass_index: int = 0, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of pass ``pass_index`` of ``epoch``, from ``start_batch`` on (stateless)."""
        device = self.x.device
        index_batches = list(
            self.sampler.batches(epoch, pass_index=pass_index, start_batch=start_batch, device=device)
        )
        params = None if self.augment is None else self._augment_params(index_batches, device)
        return self._generate(index_batches, params)

    def _augment_params(
        self, index_batches: list[IndexBatch], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's crop offsets and flips for the given batches, concatenated.

        Each batch's draw depends on its key only; the whole pass goes to ``device`` in one copy, so
        the loop makes no host-to-device transfer per batch.
        """
        sampler = self.sampler
        drawn = [
            crop_flip_params(
                self.seed, batch.key, batch.global_size, self.padding, sampler.rank, sampler.world_size
            )
            for batch in index_batches
        ]
        offsets = torch.cat([o for o, _ in drawn]) if drawn else torch.empty(0, 2, dtype=torch.int64)
        flips = torch.cat([f for _, f in drawn]) if drawn else torch.empty(0, dtype=torch.bool)
        return offsets.to(device), flips.to(device)

    def _generate(
        self, index_batches: list[IndexBatch], params: tuple[torch.Tensor, torch.Tensor] | None
    ) -> Iterator[Batch]:
        """Gather, augment and convert a few consecutive batches at once (about ``CHUNK_BYTES`` of
        float32), then yield them as slices: fewer, larger kernels than one set per batch."""
        sample_bytes = 4 * max(1, math.prod(self.x.shape[1:]))
        per_chunk = max(1, CHUNK_BYTES // (sample_bytes * self.sampler.batch_size))
        used = 0
        for first in range(0, len(index_batches), per_chunk):
            group = index_batches[first : first + per_chunk]
            sizes = [batch.indices.numel() for batch in group]
            positions = torch.cat([batch.indices for batch in group])
            rows = positions if self.indices is None else self.indices[positions]
            xs = self.x.index_select(0, rows)
            if params is not None:
                chunk = slice(used, used + rows.numel())
                xs = crop_flip(xs, params[0][chunk], params[1][chunk], self.padding)
            used += rows.numel()
            yield from zip(to_float(xs).split(sizes), self.y.index_select(0, rows).split(sizes), strict=True)

    def iter_from(self, epoch: EpochKey, start_batch: int = 0) -> Iterator[Batch]:
        """Epoch ``epoch`` from batch ``start_batch`` on: the same batches a full iteration yields there."""
        return self.batches(epoch, start_batch=start_batch)

    def __iter__(self) -> Iterator[Batch]:
        epoch, pass_index, start = self.sampler.take_position()
        return self.batches(epoch, pass_index=pass_index, start_batch=start)

    def __repr__(self) -> str:
        return (
            f"TensorLoader(samples={self.num_samples}, batch_size={self.batch_size}, batches={len(self)}, "
            f"shuffle={self.sampler.shuffle}, augment={self.augment!r}, device={self.x.device})"
        )


def split_loaders(
    bundle: DatasetBundle,
    split: Split,
    batch_size: int,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    augment: bool = True,
    eval_batch_size: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, TensorLoader]:
    """The loaders of a forgetting split, sharing one copy of the data on ``device``.

    Training (shuffled; crop+flip when ``augment`` and ``bundle.augment``; ``drop_last=False``):
    ``"retain"``, ``"forget"``. Evaluation (in index order, no augmentation, ``eval_batch_size``,
    default ``batch_size``): ``"retain_eval"``, ``"forget_eval"``, ``"test"``, and for a class-wise
    split ``"test_retain"``, ``"test_forget"``.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int (got {seed!r}); pass e.g. seed=0")
    n_train, n_test = bundle.train_y.numel(), bundle.test_y.numel()
    if split.num_samples != n_train:
        raise ValueError(
            f"split covers {split.num_samples} samples but {bundle.name} has {n_train} training samples; "
            "make the split from bundle.train_y"
        )
    if split.test_retain is not None and split.test_retain.numel() + split.test_forget.numel() != n_test:
        raise ValueError(
            f"split's test indices cover {split.test_retain.numel() + split.test_forget.numel()} samples but "
            f"{bundle.name} has {n_test} test samples; pass test_labels=bundle.test_y"
        )
    data = bundle.to(device)
    eval_size = batch_size if eval_batch_size is None else eval_batch_size
    train_augment = "crop_flip" if augment and data.augment else None
    shard = {"rank": rank, "world_size": world_size}

    def train(stream: Stream, indices: torch.Tensor) -> TensorLoader:
        return TensorLoader(
            data.train_x, data.train_y, batch_size, shuffle=True, augment=train_augment,
            seed=fold_in(seed, stream), indices=indices, **shard,
        )  # fmt: skip

    def evaluate(x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None) -> TensorLoader:
        return TensorLoader(x, y, eval_size, shuffle=False, indices=indices, **shard)

    loaders = {
        "retain": train(Stream.RETAIN_LOADER, split.retain),
        "forget": train(Stream.FORGET_LOADER, split.forget),
        "retain_eval": evaluate(data.train_x, data.train_y, split.retain),
        "forget_eval": evaluate(data.train_x, data.train_y, split.forget),
        "test": evaluate(data.test_x, data.test_y, None),
    }
    if split.test_retain is not None:
        loaders["test_retain"] = evaluate(data.test_x, data.test_y, split.test_retain)
        loaders["test_forget"] = evaluate(data.test_x, data.test_y, split.test_forget)
    return loaders
