"""Shared data for the compat tests: a Fashion-MNIST subset and a LeNet trained on it (cached per process)."""

from __future__ import annotations

import functools

import torch

import funlearn as fl
from funlearn.compat.data import UnlearnDataSetup
from funlearn.compat.robmodel import RobModel, load_model

MEAN, STD = [0.2860], [0.3530]
TRAIN_SUBSET, TEST_SUBSET = 1500, 600


def setup() -> UnlearnDataSetup:
    """Fashion-MNIST (the real IDX files), a fixed stratified subset of 1500 train / 600 test samples."""
    return UnlearnDataSetup("FashionMNIST", 10, MEAN, STD, train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET)


@functools.lru_cache(maxsize=1)
def _pretrained_state() -> dict[str, torch.Tensor]:
    rmodel = RobModel(load_model("LeNet", 10), 10, {"mean": MEAN, "std": STD})
    train, _ = setup().get_loaders(batch_size=64, train_shuffle_and_transform=True)
    result = fl.train(rmodel.fmodel, rmodel.params, rmodel.buffers, train, epochs=6, optimizer=fl.adam(3e-3),
                      progress=False)  # fmt: skip
    rmodel.params, rmodel.buffers = result.params, result.buffers
    return {k: v.clone() for k, v in rmodel.state_dict().items()}


def pretrained() -> RobModel:
    """A fresh RobModel holding the (cached) LeNet trained for 6 epochs on the training subset."""
    rmodel = RobModel(load_model("LeNet", 10), 10, {"mean": MEAN, "std": STD})
    rmodel.load_state_dict(_pretrained_state())
    return rmodel
