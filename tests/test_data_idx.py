"""The IDX reader and the MNIST-family loaders on files written here, and the search order."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from funlearn.data import load_dataset, read_idx

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, CODES[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist_dir(
    directory: Path, *, n_train: int, n_test: int, label: int | None = None, gz: bool = True, seed=0
):
    """Four IDX files as in the MNIST distribution; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        STEMS[1]: rng.integers(0, 10, n_train).astype(np.uint8)
        if label is None
        else np.full(n_train, label, np.uint8),
        STEMS[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        STEMS[3]: rng.integers(0, 10, n_test).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(directory / (stem + (".gz" if gz else "")), array, gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4),  # images
        np.array([9, 0, 3, 3, 7], dtype=np.uint8),  # labels
        np.array([[-70000, 1], [2, 2**30]], dtype=np.int32),  # multi-byte, big-endian on disk
        np.array([0.5, -1.25, 3e10], dtype=np.float32),
    ],
)
def test_read_idx_round_trip(tmp_path, array, gz):
    path = write_idx(tmp_path / "file-ubyte", array, gz)  # no .gz suffix: detected by magic bytes
    out = read_idx(path)
    assert tuple(out.shape) == array.shape
    assert np.array_equal(out.numpy(), array)
    assert out.numpy().dtype == array.dtype


def test_read_idx_rejects_corrupt_files(tmp_path):
    good = idx_bytes(np.zeros((2, 3, 3), np.uint8))
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ValueError, match=r"promises shape \(2, 3, 3\).*truncated or corrupt"):
        read_idx(tmp_path / "short")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(ValueError, match=r"is not an IDX file"):
        read_idx(tmp_path / "text")


def test_mnist_from_raw_files_in_root(tmp_path):
    arrays = write_mnist_dir(tmp_path, n_train=7, n_test=3, gz=False)
    bundle = load_dataset("mnist", root=tmp_path)
    assert bundle.train_x.shape == (7, 1, 28, 28) and bundle.train_x.dtype == torch.uint8
    assert np.array_equal(bundle.train_x[:, 0].numpy(), arrays[STEMS[0]])
    assert np.array_equal(bundle.test_x[:, 0].numpy(), arrays[STEMS[2]])
    assert bundle.train_y.dtype == torch.int64 and bundle.train_y.tolist() == arrays[STEMS[1]].tolist()
    assert bundle.test_y.tolist() == arrays[STEMS[3]].tolist()
    assert (bundle.num_classes, bundle.channels, bundle.image_size, bundle.augment) == (10, 1, 28, False)
    assert bundle.source == str(tmp_path)


def test_kmnist_in_torchvision_layout_found_through_env(tmp_path, monkeypatch):
    arrays = write_mnist_dir(tmp_path / "KMNIST" / "raw", n_train=4, n_test=2, gz=True)
    monkeypatch.setenv("FUNLEARN_DATA", str(tmp_path))
    bundle = load_dataset("KMNIST")
    assert np.array_equal(bundle.train_x[:, 0].numpy(), arrays[STEMS[0]])
    assert bundle.class_names[1] == "ki"


def test_root_comes_before_funlearn_data(tmp_path, monkeypatch):
    write_mnist_dir(tmp_path / "a" / "mnist", n_train=3, n_test=1, label=1)
    write_mnist_dir(tmp_path / "b", n_train=3, n_test=1, label=2)
    monkeypatch.setenv("FUNLEARN_DATA", str(tmp_path / "b"))
    assert load_dataset("mnist", root=tmp_path / "a").train_y.tolist() == [1, 1, 1]
    assert load_dataset("mnist").train_y.tolist() == [2, 2, 2]


def test_fashion_mnist_root_before_debian_location(tmp_path, monkeypatch):
    monkeypatch.delenv("FUNLEARN_DATA", raising=False)
    write_mnist_dir(tmp_path / "FashionMNIST" / "raw", n_train=2, n_test=1, label=4)
    bundle = load_dataset("Fashion-MNIST", root=tmp_path)
    assert bundle.train_y.tolist() == [4, 4]
    debian = Path("/usr/share/datasets/fashion-mnist")
    if not (debian / "train-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed; the fallback cannot be checked")
    assert load_dataset("fashion_mnist").source == str(debian)


def test_missing_data_lists_every_place_tried(tmp_path, monkeypatch):
    root, env = tmp_path / "root", tmp_path / "env"
    root.mkdir()
    env.mkdir()
    monkeypatch.setenv("FUNLEARN_DATA", str(env))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", root=root)
    message = str(info.value)
    for place in (root, root / "mnist", root / "MNIST" / "raw", env, env / "mnist", env / "MNIST" / "raw"):
        assert f"- {place} (" in message
    assert "train-images-idx3-ubyte[.gz]" in message
    assert "download=True" in message and "FUNLEARN_DATA=DIR" in message
    with pytest.raises(FileNotFoundError, match=r"root='.*nowhere' is not a directory"):
        load_dataset("mnist", root=tmp_path / "nowhere")


def test_mismatched_image_and_label_counts(tmp_path):
    write_mnist_dir(tmp_path, n_train=4, n_test=2)
    write_idx(tmp_path / (STEMS[1] + ".gz"), np.zeros(3, np.uint8), gz=True)
    with pytest.raises(ValueError, match=r"are not \(N, H, W\) images with N labels"):
        load_dataset("mnist", root=tmp_path)
