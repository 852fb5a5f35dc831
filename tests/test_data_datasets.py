"""Dataset registry, digits, Fashion-MNIST metadata, CIFAR and TinyImageNet on files written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import funlearn.data.bundle as bundle_module
from funlearn.data import (
    DatasetBundle,
    TinyImageNetFolder,
    available_datasets,
    classwise_split,
    load_dataset,
    register_dataset,
    split_dataloaders,
    split_loaders,
)

# ------------------------------------------------------------------------------- registry


def test_available_datasets_lists_the_builtins():
    assert set(available_datasets()) >= {
        "digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "tinyimagenet",
    }  # fmt: skip


def test_register_and_load_a_custom_dataset(monkeypatch):
    monkeypatch.setattr(bundle_module, "_REGISTRY", dict(bundle_module._REGISTRY))
    calls = []

    def toy(root, *, download, verify):
        calls.append((root, download, verify))
        x = torch.zeros(4, 1, 2, 2)
        y = torch.tensor([0, 1, 0, 1])
        return DatasetBundle("toy", x, y, x[:2], y[:2], 2, 1, 2, (0.0,), (1.0,), False)

    register_dataset("Toy-Set", toy)
    assert "Toy-Set" in available_datasets()
    assert load_dataset("toy_set", download=True).num_classes == 2
    assert calls == [(None, True, True)]
    with pytest.raises(ValueError, match=r"'toyset' is already registered; pass overwrite=True"):
        register_dataset("toyset", toy)
    register_dataset("toyset", toy, overwrite=True)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; available: cifar10, cifar100, digits"):
        load_dataset("imagenet")


# --------------------------------------------------------------------------------- digits


def test_digits_bundle():
    from sklearn.datasets import load_digits

    raw = load_digits()
    bundle = load_dataset("digits")
    assert bundle.train_x.shape == (1438, 1, 8, 8) and bundle.test_x.shape == (359, 1, 8, 8)
    assert bundle.train_x.dtype == torch.float32 and bundle.train_y.dtype == torch.int64
    assert float(bundle.train_x.min()) == 0.0 and float(bundle.train_x.max()) == 1.0
    # Every image of the set appears once in train or test, pixels scaled from 0..16.
    all_x = torch.cat([bundle.train_x, bundle.test_x]).reshape(-1, 64) * 16
    assert torch.equal(
        torch.sort(all_x.sum(1)).values, torch.sort(torch.tensor(raw.data, dtype=torch.float32).sum(1)).values
    )
    # Stratified: each class's test count is within one of 20% of its size.
    per_class = torch.bincount(torch.tensor(raw.target), minlength=10)
    test_counts = torch.bincount(bundle.test_y, minlength=10)
    assert bool(((test_counts - per_class * 0.2).abs() < 1).all())
    again = load_dataset("digits")
    assert torch.equal(again.train_x, bundle.train_x) and torch.equal(again.test_y, bundle.test_y)
    assert bundle.mean[0] == pytest.approx(float(bundle.train_x.mean()))
    assert (bundle.num_classes, bundle.channels, bundle.image_size, bundle.augment) == (10, 1, 8, False)


def test_load_dataset_moves_to_device():
    bundle = load_dataset("digits", device="meta")
    assert {t.device.type for t in (bundle.train_x, bundle.train_y, bundle.test_x, bundle.test_y)} == {"meta"}


# ------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_real_files_and_metadata():
    try:
        bundle = load_dataset("fashion_mnist")
    except FileNotFoundError as err:
        pytest.skip(
            f"Fashion-MNIST files not found (install dataset-fashion-mnist): {str(err).splitlines()[0]}"
        )
    assert bundle.train_x.shape == (60000, 1, 28, 28) and bundle.test_x.shape == (10000, 1, 28, 28)
    assert bundle.train_x.dtype == torch.uint8
    assert torch.equal(torch.bincount(bundle.train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(bundle.test_y), torch.full((10,), 1000))
    pixels = bundle.train_x.float() / 255
    assert bundle.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-3)
    assert bundle.std[0] == pytest.approx(float(pixels.std()), abs=1e-3)
    assert bundle.class_names[9] == "Ankle boot"


# ---------------------------------------------------------------------------------- CIFAR


def write_cifar10(root: Path, sizes=(3, 2, 4, 1, 2), n_test=3) -> dict[str, np.ndarray]:
    """cifar-10-batches-py as distributed: pickled dicts with row-major CHW uint8 rows."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data, labels = [], []
    for i, n in enumerate([*sizes, n_test]):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        ys = rng.integers(0, 10, n).tolist()
        name = f"data_batch_{i + 1}" if i < len(sizes) else "test_batch"
        entry = {
            "batch_label": name,
            "labels": ys,
            "data": rows,
            "filenames": [f"{name}_{k}.png" for k in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        data.append(rows)
        labels += ys
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}, protocol=2))
    n_train = sum(sizes)
    all_rows, all_labels = np.concatenate(data), np.array(labels)
    return {
        "train_x": all_rows[:n_train].reshape(-1, 3, 32, 32),
        "train_y": all_labels[:n_train],
        "test_x": all_rows[n_train:].reshape(-1, 3, 32, 32),
        "test_y": all_labels[n_train:],
    }


def test_cifar10_from_the_standard_folder(tmp_path):
    expected = write_cifar10(tmp_path)
    bundle = load_dataset("cifar10", root=tmp_path, verify=False)
    assert bundle.train_x.shape == (12, 3, 32, 32) and bundle.train_x.dtype == torch.uint8
    for key, array in expected.items():
        assert np.array_equal(getattr(bundle, key).numpy(), array), key
    assert bundle.class_names[3] == "cat"
    assert (bundle.num_classes, bundle.channels, bundle.image_size, bundle.augment) == (10, 3, 32, True)
    assert bundle.mean == pytest.approx((0.4914, 0.4822, 0.4465))


def test_cifar10_checksums_are_verified_by_default(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(
        ValueError, match=r"data_batch_1 does not match the published md5 .* pass verify=False"
    ):
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("FUNLEARN_DATA", raising=False)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"cifar10: cifar-10-batches-py/ with data_batch_1.* not found"
    ):
        load_dataset("cifar10", root=tmp_path, verify=False)


def test_cifar100_from_the_standard_folder(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    arrays = {}
    for name, n in (("train", 5), ("test", 2)):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        entry = {
            "filenames": [],
            "batch_label": name,
            "fine_labels": fine,
            "coarse_labels": [0] * n,
            "data": rows,
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        arrays[name] = (rows.reshape(-1, 3, 32, 32), fine)
    fine_names = [f"class{k}" for k in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": fine_names, "coarse_label_names": []}))
    bundle = load_dataset("cifar100", root=tmp_path, verify=False)
    assert np.array_equal(bundle.train_x.numpy(), arrays["train"][0])
    assert bundle.train_y.tolist() == arrays["train"][1] and bundle.test_y.tolist() == arrays["test"][1]
    assert bundle.num_classes == 100 and bundle.class_names[42] == "class42"


# ---------------------------------------------------------------------------- TinyImageNet

WNIDS = ["n03000000", "n01000000", "n02000000"]  # listed unsorted, numbered sorted


def write_tinyimagenet(root: Path) -> dict[str, list]:
    """A tiny tiny-imagenet-200 tree with constant-colour JPEGs; returns the colours per split."""
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (base / "words.txt").write_text("n01000000\tcat, kitty\nn02000000\tdog\nn03000000\tfish\nn09\tother\n")
    colours = {"train": [], "val": []}
    for k, wnid in enumerate(sorted(WNIDS)):
        (base / "train" / wnid / "images").mkdir(parents=True)
        for i in range(2):
            colour = (40 * k + 20, 100 + 50 * i, 200 - 30 * k)
            Image.new("RGB", (64, 64), colour).save(
                base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", quality=95
            )
            colours["train"].append((colour, k))
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i, wnid in enumerate(["n02000000", "n03000000", "n01000000"]):
        grey = 60 + 70 * i
        Image.new("L", (64, 64), grey).save(base / "val" / "images" / f"val_{i}.JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
        colours["val"].append(((grey, grey, grey), sorted(WNIDS).index(wnid)))
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return colours


def test_tinyimagenet_in_memory(tmp_path):
    colours = write_tinyimagenet(tmp_path)
    bundle = load_dataset("tinyimagenet", root=tmp_path)
    assert bundle.train_x.shape == (6, 3, 64, 64) and bundle.train_x.dtype == torch.uint8
    assert bundle.test_x.shape == (3, 3, 64, 64)  # greyscale val images expanded to RGB
    for x, y, split in ((bundle.train_x, bundle.train_y, "train"), (bundle.test_x, bundle.test_y, "val")):
        assert y.tolist() == [label for _, label in colours[split]]
        mean_colour = x.float().mean(dim=(2, 3))
        target = torch.tensor([colour for colour, _ in colours[split]], dtype=torch.float32)
        assert float((mean_colour - target).abs().max()) <= 3.0  # JPEG of a flat colour is near-exact
    assert bundle.class_names == ("cat, kitty", "dog", "fish")
    assert (bundle.num_classes, bundle.channels, bundle.image_size, bundle.augment) == (3, 3, 64, True)


def test_tinyimagenet_folder_dataloaders_match_in_memory(tmp_path):
    write_tinyimagenet(tmp_path)
    bundle = load_dataset("tinyimagenet", root=tmp_path)
    train_set, test_set = TinyImageNetFolder(tmp_path, "train"), TinyImageNetFolder(tmp_path, "val")
    assert torch.equal(train_set.targets, bundle.train_y) and torch.equal(test_set.targets, bundle.test_y)
    image, label = train_set[3]
    assert image.dtype == torch.uint8 and torch.equal(image, bundle.train_x[3]) and label == 1
    split = classwise_split(train_set.targets, 1, test_labels=test_set.targets)
    lazy = split_dataloaders(train_set, test_set, split, 2, seed=3, num_workers=1)
    in_memory = split_loaders(bundle, split, 2, seed=3)
    assert set(lazy) == set(in_memory) == {
        "retain", "forget", "retain_eval", "forget_eval", "test", "test_retain", "test_forget",
    }  # fmt: skip
    # Same order and the same crop+flip draws: the lazy path reproduces the in-memory batches exactly.
    for name in lazy:
        pairs = list(zip(lazy[name], in_memory[name].iter_from(0), strict=True))
        assert pairs, name
        for (xa, ya), (xb, yb) in pairs:
            assert xa.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb), name


def test_tinyimagenet_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("FUNLEARN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"tiny-imagenet-200/wnids.txt not found"):
        load_dataset("tinyimagenet", root=tmp_path)
