"""The data layer's random streams, each named by an integer folded into its keys.

Every draw uses a fresh generator ``funlearn.random.key(seed, Stream.X, ...)``, so draws of
different purposes (a split, an epoch's order, a batch's crop offsets) are independent, each is a
pure function of its key, and none reads or advances a global RNG.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Stream"]


class Stream(IntEnum):
    """Purpose tags: ``key(seed, Stream.ORDER, epoch, pass)`` and so on."""

    RANDOM_SPLIT = 1  # random_split(seed)
    SUBCLASS_SPLIT = 2  # subclass_split(seed, class)
    ORDER = 3  # BatchSampler(seed, *epoch, pass)
    AUGMENT = 4  # TensorLoader(seed, *epoch, pass, batch)
    MERGED = 5  # merged_batches' epoch key (seed, epoch)
    RETAIN_LOADER = 6  # split_loaders / split_dataloaders: the retain loader's seed
    FORGET_LOADER = 7  # ... the forget loader's seed
    EVAL_LOADER = 8  # ... the evaluation loaders' seeds (unshuffled)
    WORKERS = 9  # DataLoader worker seeds
