"""UnlearnDataSetup and MergedLoaders on the real Fashion-MNIST files."""

from __future__ import annotations

import pytest
import torch

import funlearn as fl
from funlearn.compat.data import MergedLoaders, UnlearnDataSetup, check_normalization
from funlearn.compat.robmodel import RobModel, load_model

from compat_common import MEAN, STD, setup


def _samples(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_random_forgetting_exact_stratified_counts_and_torchunlearn_loader_rules():
    data = setup()
    train, test = data.get_loaders_for_rand(batch_size=64, ratio=0.1, stratified=True, seed=42)
    assert set(train) == {"Retain", "Forget"} and set(test) == {"Test"}
    bundle = data.bundle
    assert bundle.train_x.shape[0] == 1500 and bundle.test_x.shape[0] == 600
    _, y_forget = _samples(train["Forget"])
    expected = [round(0.1 * int((bundle.train_y == c).sum())) for c in range(10)]  # 150 per class here
    assert torch.bincount(y_forget, minlength=10).tolist() == expected
    assert y_forget.numel() == 150 and len(train["Forget"]) == 3  # 64 + 64 + 22: Forget keeps its last batch
    x_retain, _ = _samples(train["Retain"])
    assert x_retain.shape[0] == (1350 // 64) * 64  # Retain drops its last incomplete batch
    assert x_retain.dtype == torch.float32 and 0.0 <= float(x_retain.min()) and float(x_retain.max()) <= 1.0
    # no shuffle by default: index order; both splits together are the training set
    retain_idx, forget_idx = train.split.retain, train.split.forget
    assert not set(retain_idx.tolist()) & set(forget_idx.tolist())
    torch.testing.assert_close(x_retain[:5], bundle.train_x[retain_idx[:5]].float() / 255)
    again, _ = data.get_loaders_for_rand(batch_size=64, ratio=0.1, seed=42)
    assert torch.equal(again.split.forget, forget_idx)
    other, _ = data.get_loaders_for_rand(batch_size=64, ratio=0.1, seed=7)
    assert not torch.equal(other.split.forget, forget_idx)
    uniform, _ = data.get_loaders_for_rand(batch_size=64, ratio=0.1, stratified=False)  # torchunlearn crashed (D4)
    assert uniform.split.forget.numel() == 150
    assert train.test is test and train.mean == tuple(MEAN)


def test_classwise_forgetting_and_shuffling():
    data = setup()
    train, test = data.get_loaders_for_classwise(batch_size=64, omit_label=1, train_shuffle_and_transform=True)
    assert set(test) == {"Test", "Test(forget)"}
    _, y_forget = _samples(train["Forget"])
    _, y_retain = _samples(train["Retain"])
    _, y_test = _samples(test["Test"])
    _, y_test_forget = _samples(test["Test(forget)"])
    n_class = int((data.bundle.train_y == 1).sum())
    assert bool((y_forget == 1).all()) and y_forget.numel() == n_class  # never drop_last for Forget (D7)
    assert not bool((y_retain == 1).any()) and not bool((y_test == 1).any()) and bool((y_test_forget == 1).all())
    assert y_test.numel() + y_test_forget.numel() == 600
    first, second = [_samples(train["Retain"])[1] for _ in range(2)]
    assert first.numel() == second.numel() == (y_retain.numel() // 64) * 64 and not torch.equal(first, second)
    assert train.split.forget_classes == (1,)
    with pytest.raises(ValueError, match="omit_label must be an int"):
        data.get_loaders_for_classwise(batch_size=64, omit_label="1")


def test_setup_checks():
    with pytest.raises(ValueError, match="has 10 classes but n_classes=100"):
        _ = UnlearnDataSetup("FashionMNIST", 100, MEAN, STD).bundle
    with pytest.raises(ValueError, match="unknown dataset 'CIFAR-7'"):
        _ = UnlearnDataSetup("CIFAR-7", 10, MEAN, STD).bundle
    with pytest.raises(ValueError, match="ratio must lie strictly between 0 and 1"):
        setup().get_loaders_for_rand(batch_size=64, ratio=1.5)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        setup().get_loaders_for_rand(batch_size=0, ratio=0.1)
    with pytest.raises(ValueError, match="train_subset must be an int"):
        UnlearnDataSetup("FashionMNIST", 10, MEAN, STD, train_subset=1.5)


def test_merged_loaders_reshuffle_the_shorter_loader_every_pass():
    retain = fl.TensorLoader(torch.arange(40.0).view(40, 1), torch.arange(40), 4, shuffle=True, seed=1)
    forget = fl.TensorLoader(torch.arange(8.0).view(8, 1), torch.arange(8), 4, shuffle=True, seed=2)
    merged = MergedLoaders({"Retain": retain, "Forget": forget})
    assert len(merged) == 10
    steps = list(merged)
    assert all(list(step) == ["Retain", "Forget"] for step in steps)
    passes = [torch.cat([steps[i]["Forget"][1] for i in range(p, p + 2)]) for p in range(0, 10, 2)]
    assert all(sorted(p.tolist()) == list(range(8)) for p in passes)  # each pass covers the forget set once
    assert len({tuple(p.tolist()) for p in passes}) > 1  # and is reshuffled (torchunlearn replayed pass 1)
    assert sorted(torch.cat([s["Retain"][1] for s in steps]).tolist()) == list(range(40))
    with pytest.raises(ValueError, match="exactly the keys 'Retain' and 'Forget'"):
        MergedLoaders({"Retain": retain, "Adjacent": forget})


def test_normalisation_mismatch_is_warned():
    train, _ = setup().get_loaders_for_rand(batch_size=64, ratio=0.1)
    good = RobModel(load_model("LeNet", 10), 10, {"mean": MEAN, "std": STD})
    bad = RobModel(load_model("LeNet", 10), 10, {"mean": [0.5], "std": [0.5]})
    check_normalization(good, MergedLoaders(train))  # silent
    with pytest.warns(UserWarning, match=r"set up with mean=\[0.286\] but the RobModel normalises with mean=\[0.5\]"):
        check_normalization(bad, MergedLoaders(train))
