"""Built-in datasets: ``digits`` (bundled with scikit-learn), the MNIST family (IDX files) and CIFAR.

* ``digits``: 1438 train / 359 test, (1, 8, 8), float32 in [0, 1] (pixels 0..16 divided by 16),
  split by ``random_split(labels, 0.2, seed=0)`` (stratified, exact); offline, no augmentation.
* ``mnist``, ``fashion_mnist``, ``kmnist``: 60000 / 10000, (1, 28, 28) uint8, read from the IDX
  files (gzipped or raw) in ``DIR``, ``DIR/<name>`` (``fashion-mnist``...) or torchvision's
  ``DIR/<FashionMNIST|MNIST|KMNIST>/raw``; Fashion-MNIST also from the Debian package
  ``dataset-fashion-mnist``. No augmentation.
* ``cifar10``, ``cifar100``: 50000 / 10000, (3, 32, 32) uint8, from ``DIR/cifar-10-batches-py`` /
  ``DIR/cifar-100-python`` through torchvision's own loader; crop+flip augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from funlearn.data.bundle import (
    DatasetBundle,
    DatasetLoader,
    download_root,
    not_found_message,
    register_dataset,
    search_dirs,
)
from funlearn.data.idx import read_idx
from funlearn.data.scenarios import random_split

__all__: list[str] = []

# ------------------------------------------------------------------------------------ digits


def load_digits(root: Path | None = None, *, download: bool = False, verify: bool = True) -> DatasetBundle:
    """scikit-learn's 1797 8x8 digits, split 80/20 (stratified, seed 0); ``root``/``download`` unused."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = torch.tensor(data.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    split = random_split(y, 0.2, seed=0)
    train_x = x[split.retain]
    return DatasetBundle(
        name="digits",
        train_x=train_x,
        train_y=y[split.retain],
        test_x=x[split.forget],
        test_y=y[split.forget],
        num_classes=10,
        channels=1,
        image_size=8,
        mean=(float(train_x.mean()),),
        std=(float(train_x.std()),),
        augment=False,
        class_names=tuple(str(d) for d in range(10)),
        source="sklearn.datasets.load_digits",
    )


# ---------------------------------------------------------------------------- MNIST family

_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class _IdxDataset:
    name: str
    torchvision_name: str  # torchvision class, also its folder: <root>/<torchvision_name>/raw
    folder: str  # conventional folder name: <root>/<folder>
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    system: tuple[tuple[Path, str], ...] = ()  # (directory, what installs it)


_MNIST_FAMILY = (
    _IdxDataset("mnist", "MNIST", "mnist", (0.1307,), (0.3081,), tuple(str(d) for d in range(10))),
    _IdxDataset(
        "fashion_mnist",
        "FashionMNIST",
        "fashion-mnist",
        (0.2860,),
        (0.3530,),
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        system=((Path("/usr/share/datasets/fashion-mnist"), "Debian package dataset-fashion-mnist"),),
    ),
    _IdxDataset(
        "kmnist",
        "KMNIST",
        "kmnist",
        (0.1918,),
        (0.3483,),
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
)


def _idx_candidates(spec: _IdxDataset, root: Path | None) -> list[tuple[Path, str]]:
    """Directories that may hold the four IDX files, in search order."""
    candidates = []
    for base, origin in search_dirs(root):
        candidates += [
            (base, origin),
            (base / spec.folder, origin),
            (base / spec.torchvision_name / "raw", origin),
        ]
    return candidates + list(spec.system)


def _idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (each gzipped or raw), or None if any is missing."""
    found = {}
    for key, stem in _IDX_FILES.items():
        for name in (stem + ".gz", stem):
            if (directory / name).is_file():
                found[key] = directory / name
                break
        else:
            return None
    return found


def _read_idx_bundle(spec: _IdxDataset, files: dict[str, Path]) -> DatasetBundle:
    arrays = {key: read_idx(path) for key, path in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{spec.name}: {files[part + '_x']} {tuple(images.shape)} and {files[part + '_y']} "
                f"{tuple(labels.shape)} are not (N, H, W) images with N labels; replace the files"
            )
    train_x = arrays["train_x"].to(torch.uint8).unsqueeze(1)
    return DatasetBundle(
        name=spec.name,
        train_x=train_x,
        train_y=arrays["train_y"].to(torch.int64),
        test_x=arrays["test_x"].to(torch.uint8).unsqueeze(1),
        test_y=arrays["test_y"].to(torch.int64),
        num_classes=len(spec.class_names),
        channels=1,
        image_size=int(train_x.shape[-1]),
        mean=spec.mean,
        std=spec.std,
        augment=False,
        class_names=spec.class_names,
        source=str(files["train_x"].parent),
    )


def _idx_loader(spec: _IdxDataset) -> DatasetLoader:
    def load(root: Path | None, *, download: bool = False, verify: bool = True) -> DatasetBundle:
        tried = _idx_candidates(spec, root)
        for directory, _ in tried:
            files = _idx_files(directory)
            if files is not None:
                return _read_idx_bundle(spec, files)
        target = download_root(root)
        how = (
            f"load_dataset({spec.name!r}, download=True) downloads it with torchvision into {target}"
            + "".join(f"; or install the {origin}" for _, origin in spec.system)
        )
        wanted = "IDX files " + ", ".join(f"{stem}[.gz]" for stem in _IDX_FILES.values())
        if not download:
            raise FileNotFoundError(not_found_message(spec.name, tried, wanted, how))
        import torchvision.datasets

        try:
            getattr(torchvision.datasets, spec.torchvision_name)(str(target), train=True, download=True)
        except (OSError, RuntimeError) as err:
            message = not_found_message(spec.name, tried, wanted, how)
            raise FileNotFoundError(f"{message}\nDownloading into {target} failed: {err}") from err
        files = _idx_files(target / spec.torchvision_name / "raw")
        if files is None:
            raise FileNotFoundError(not_found_message(spec.name, tried, wanted, how))
        return _read_idx_bundle(spec, files)

    load.__doc__ = f"Load {spec.name} from IDX files (search order in funlearn.data.bundle)."
    return load


# ------------------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarDataset:
    name: str
    torchvision_name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR = (
    _CifarDataset("cifar10", "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    _CifarDataset("cifar100", "CIFAR100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
)


def _nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 array -> contiguous (N, C, H, W) tensor."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _cifar_loader(spec: _CifarDataset) -> DatasetLoader:
    def load(root: Path | None, *, download: bool = False, verify: bool = True) -> DatasetBundle:
        import torchvision.datasets
        from torchvision.datasets.utils import check_integrity

        cls = getattr(torchvision.datasets, spec.torchvision_name)
        entries = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        tried = search_dirs(root)
        base = next(
            (d for d, _ in tried if all((d / cls.base_folder / name).is_file() for name, _ in entries)), None
        )
        if base is None:
            files = ", ".join(name for name, _ in entries)
            wanted = f"{cls.base_folder}/ with {files}"
            target = download_root(root)
            how = f"load_dataset({spec.name!r}, download=True) downloads it with torchvision into {target}"
            tried_dirs = [(d / cls.base_folder, origin) for d, origin in tried]
            if not download:
                raise FileNotFoundError(not_found_message(spec.name, tried_dirs, wanted, how))
            try:
                cls(str(target), train=True, download=True)  # torchvision verifies the archive's md5
            except (OSError, RuntimeError) as err:
                message = not_found_message(spec.name, tried_dirs, wanted, how)
                raise FileNotFoundError(f"{message}\nDownloading into {target} failed: {err}") from err
            base = target
        if verify:
            for name, md5 in entries:
                path = base / cls.base_folder / name
                if not check_integrity(str(path), md5):
                    raise ValueError(
                        f"{spec.name}: {path} does not match the published md5 {md5}; "
                        "download it again, or pass verify=False for a copy you trust"
                    )
        # torchvision unpickles the batches; with verify the checksums were checked just above.
        unchecked = type(
            f"_Unchecked{cls.__name__}",
            (cls,),
            {
                "train_list": [[name, None] for name, _ in cls.train_list],
                "test_list": [[name, None] for name, _ in cls.test_list],
                "meta": {**cls.meta, "md5": None},
            },
        )
        train, test = unchecked(str(base), train=True), unchecked(str(base), train=False)
        return DatasetBundle(
            name=spec.name,
            train_x=_nchw(train.data),
            train_y=torch.tensor(train.targets, dtype=torch.int64),
            test_x=_nchw(test.data),
            test_y=torch.tensor(test.targets, dtype=torch.int64),
            num_classes=len(train.classes),
            channels=3,
            image_size=32,
            mean=spec.mean,
            std=spec.std,
            augment=True,
            class_names=tuple(train.classes),
            source=str(base / cls.base_folder),
        )

    load.__doc__ = f"Load {spec.name} through torchvision's loader (search order in funlearn.data.bundle)."
    return load


def _register_builtins() -> None:
    register_dataset("digits", load_digits)
    for spec in _MNIST_FAMILY:
        register_dataset(spec.name, _idx_loader(spec))
    for cifar in _CIFAR:
        register_dataset(cifar.name, _cifar_loader(cifar))


_register_builtins()
