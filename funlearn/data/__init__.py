"""Data: forgetting scenarios, datasets and merged forget/retain batching.

* ``scenarios``: :class:`Split` and the scenario functions (random, class-wise, subclass,
  explicit, and ``"random:0.1"``-style strings).
* ``bundle`` / ``datasets`` / ``tinyimagenet``: the dataset registry and the built-in datasets.
* ``idx``: the IDX (MNIST-family) reader.
* ``sampling`` / ``augment`` / ``loaders``: seeded, resumable, rank-sharded in-memory batching.
* ``dataloaders``: the same over ``torch.utils.data.DataLoader`` for lazily read datasets.
* ``merged``: ``{"forget": ..., "retain": ...}`` steps with a fresh reshuffle per pass.
* ``streams``: the tags that keep the layer's random draws (``funlearn.random.key``) independent.

Images stay in pixel space ([0, 1], or uint8 / 255); the model normalises with the bundle's
``mean``/``std``. No function here reads or advances a global RNG.
"""

from funlearn.data import datasets as _builtin_datasets  # noqa: F401  (registers the built-ins)
from funlearn.data.augment import crop_flip
from funlearn.data.bundle import DatasetBundle, available_datasets, load_dataset, register_dataset
from funlearn.data.dataloaders import split_dataloaders
from funlearn.data.idx import read_idx
from funlearn.data.loaders import TensorLoader, split_loaders, to_float
from funlearn.data.merged import MergedBatches, merged_batches
from funlearn.data.sampling import BatchSampler
from funlearn.data.scenarios import (
    Scenario,
    Split,
    classwise_split,
    explicit_split,
    make_split,
    parse_scenario,
    random_split,
    subclass_split,
)
from funlearn.data.tinyimagenet import TinyImageNetFolder

__all__ = [
    "BatchSampler",
    "DatasetBundle",
    "MergedBatches",
    "Scenario",
    "Split",
    "TensorLoader",
    "TinyImageNetFolder",
    "available_datasets",
    "classwise_split",
    "crop_flip",
    "explicit_split",
    "load_dataset",
    "make_split",
    "merged_batches",
    "parse_scenario",
    "random_split",
    "read_idx",
    "register_dataset",
    "split_dataloaders",
    "split_loaders",
    "subclass_split",
    "to_float",
]
