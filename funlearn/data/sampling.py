"""Which sample indices form batch ``b`` of epoch ``e`` on rank ``r``: a pure function of the seed.

One *pass* over ``N`` samples uses the order ``perm = randperm(N)`` drawn from
``funlearn.random.key(seed, Stream.ORDER, *epoch, pass)`` (``arange(N)`` without shuffling).
With per-rank batch size ``B`` and ``W`` ranks, the global batch ``b`` is
``perm[b*B*W : (b+1)*B*W]`` and rank ``r`` takes its elements ``r, r+W, r+2W, ...``. So the ranks'
shards are disjoint and cover the pass, every rank has the same number of batches, and the union of
the ranks' batch ``b`` is batch ``b`` of a single process with batch size ``B*W`` (results do not
depend on the world size). When ``N mod (B*W)`` is nonzero but below ``W`` (and
``drop_last=False``), ranks ``>= N mod (B*W)`` get an empty last batch.

:class:`BatchSampler` is also a ``torch.utils.data`` batch sampler, so a ``DataLoader`` over a
map-style dataset sees exactly the batches a :class:`~funlearn.data.TensorLoader` sees.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import Sampler

from funlearn.data.streams import Stream
from funlearn.random import key

__all__ = ["BatchSampler", "EpochKey", "IndexBatch", "KeyedIndices"]

EpochKey = int | tuple[int, ...]


class IndexBatch(NamedTuple):
    """Batch ``index`` of a pass: this rank's ``indices``, the global batch's size, and its key.

    ``key`` is ``(*epoch, pass, index)``: what the batch's random augmentation is drawn from.
    """

    index: int
    indices: torch.Tensor
    global_size: int
    key: tuple[int, ...]


class KeyedIndices(list):
    """A batch's sample indices as the ``list`` a ``DataLoader`` expects, carrying ``key`` and
    ``global_size`` of its :class:`IndexBatch` (picklable, so they reach worker processes)."""

    key: tuple[int, ...]
    global_size: int


def epoch_key(epoch: EpochKey) -> tuple[int, ...]:
    """An epoch number or a tuple key, as a tuple."""
    return epoch if isinstance(epoch, tuple) else (int(epoch),)


def _check_positive_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} (got {value!r})")
    return int(value)


class BatchSampler(Sampler[list[int]]):
    """Seeded, resumable, rank-sharded batches of ``range(num_samples)``.

    ``batches(epoch, pass_index=p, start_batch=b)`` yields the :class:`IndexBatch` es of pass ``p``
    of ``epoch`` from batch ``b`` on; it has no state. Iterating the sampler (as a ``DataLoader``
    does) yields index lists of the position set by ``set_epoch`` and then moves to the next pass,
    so re-iterating without ``set_epoch`` reshuffles.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples = _check_positive_int(num_samples, "num_samples", 0)
        self.batch_size = _check_positive_int(batch_size, "batch_size", 1)
        self.world_size = _check_positive_int(world_size, "world_size", 1)
        self.rank = _check_positive_int(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise ValueError(
                f"rank={rank} must be below world_size={world_size}; pass 0 <= rank < world_size"
            )
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an int (got {seed!r})")
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.set_epoch(0)

    @property
    def global_batch_size(self) -> int:
        """``batch_size * world_size``: the samples one step consumes over all ranks."""
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.global_batch_size)
        return full + int(rest > 0 and not self.drop_last)

    def set_epoch(self, epoch: EpochKey, *, pass_index: int = 0, start_batch: int = 0) -> None:
        """Make the next iteration yield pass ``pass_index`` of ``epoch`` from batch ``start_batch``."""
        self._check_start(start_batch)
        self.epoch, self._pass, self._start = epoch, pass_index, start_batch

    def _check_start(self, start_batch: int) -> None:
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch={start_batch} must lie in [0, {len(self)}] (batches per epoch)")

    def take_position(self) -> tuple[EpochKey, int, int]:
        """The (epoch, pass, start batch) of the next iteration; advances to the following pass."""
        position = (self.epoch, self._pass, self._start)
        self._pass, self._start = self._pass + 1, 0
        return position

    def order(self, epoch: EpochKey, pass_index: int = 0) -> torch.Tensor:
        """The order of the ``N`` samples in pass ``pass_index`` of ``epoch`` (CPU int64)."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        gen = key(self.seed, Stream.ORDER, *epoch_key(epoch), pass_index)
        return torch.randperm(self.num_samples, generator=gen)

    def batches(
        self,
        epoch: EpochKey,
        *,
        pass_index: int = 0,
        start_batch: int = 0,
        device: torch.device | str | None = None,
    ) -> Iterator[IndexBatch]:
        """This rank's batches of one pass, from ``start_batch`` on (indices on ``device``)."""
        self._check_start(start_batch)
        prefix = epoch_key(epoch) + (pass_index,)
        return self._generate(self.order(epoch, pass_index).to(device), start_batch, prefix)

    def _generate(
        self, order: torch.Tensor, start_batch: int, prefix: tuple[int, ...]
    ) -> Iterator[IndexBatch]:
        size = self.global_batch_size
        for b in range(start_batch, len(self)):
            block = order[b * size : (b + 1) * size]
            yield IndexBatch(b, block[self.rank :: self.world_size], block.numel(), prefix + (b,))

    def __iter__(self) -> Iterator[KeyedIndices]:
        # A generator: the position is taken at the first batch, not at iter(). A multi-worker
        # DataLoader calls iter() on its sampler twice and only draws from the second iterator.
        epoch, pass_index, start = self.take_position()
        for batch in self.batches(epoch, pass_index=pass_index, start_batch=start):
            indices = KeyedIndices(batch.indices.tolist())
            indices.key, indices.global_size = batch.key, batch.global_size
            yield indices
