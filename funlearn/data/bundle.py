"""A loaded dataset (:class:`DatasetBundle`), the registry of datasets by name, and where to look.

``train_x``/``test_x`` have shape ``(N, C, H, W)`` and hold pixels either as **uint8** (value/255;
every dataset read from 8-bit image files: MNIST family, CIFAR, TinyImageNet) or as **float32 in
[0, 1]** (``digits``). ``train_y``/``test_y`` are int64. Data stays in pixel space: ``mean``/``std``
are metadata for the model, which normalises inside (see ``funlearn.model``).

Files are searched, in order, in an explicit ``root``, then in each directory of
``$FUNLEARN_DATA`` (``os.pathsep``-separated), then in system locations (e.g. the Debian package
``dataset-fashion-mnist``); with ``download=True`` missing data is downloaded into
:func:`download_root`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

__all__ = [
    "DatasetBundle",
    "available_datasets",
    "download_root",
    "load_dataset",
    "register_dataset",
    "search_dirs",
]

DatasetLoader = Callable[..., "DatasetBundle"]


@dataclass(frozen=True, eq=False)
class DatasetBundle:
    """Train and test tensors of a dataset plus its metadata.

    ``augment`` says whether the standard training augmentation (random crop with padding 4 and a
    horizontal flip) applies; ``source`` says where the data was read from.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    class_names: tuple[str, ...] | None = None
    source: str = ""

    def to(self, device: torch.device | str | None) -> DatasetBundle:
        """The bundle with its four tensors on ``device`` (itself when ``device`` is None)."""
        if device is None:
            return self
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    def __repr__(self) -> str:
        return (
            f"DatasetBundle({self.name!r}, train={tuple(self.train_x.shape)} {self.train_x.dtype}, "
            f"test={tuple(self.test_x.shape)}, classes={self.num_classes}, source={self.source!r})"
        )


_REGISTRY: dict[str, tuple[str, DatasetLoader]] = {}


def _key(name: str) -> str:
    """Registry key: lower case, letters and digits only (``"Fashion-MNIST"`` -> ``"fashionmnist"``)."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def register_dataset(name: str, loader_fn: DatasetLoader, *, overwrite: bool = False) -> None:
    """Register ``loader_fn(root, *, download, verify) -> DatasetBundle`` under ``name``.

    ``root`` is a ``Path`` or None; ``download`` allows fetching missing data; ``verify`` asks for
    checksum checks where the dataset publishes them. Names match case- and punctuation-insensitively.
    """
    if not isinstance(name, str) or not _key(name):
        raise ValueError(f"name must be a non-empty string of letters/digits (got {name!r})")
    if not callable(loader_fn):
        raise ValueError(f"loader_fn for {name!r} must be callable (got {loader_fn!r})")
    if _key(name) in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[_key(name)] = (name, loader_fn)


def available_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(display for display, _ in _REGISTRY.values())


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    device: torch.device | str | None = None,
    verify: bool = True,
) -> DatasetBundle:
    """Load dataset ``name`` (see :func:`available_datasets`), optionally onto ``device``.

    ``root`` is searched first, then ``$FUNLEARN_DATA``, then system locations; ``download=True``
    fetches what is missing. ``verify`` checks published checksums before reading (CIFAR).
    """
    entry = _REGISTRY.get(_key(name)) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    root = None if root is None else Path(root).expanduser()
    if root is not None and not download and not root.is_dir():
        raise FileNotFoundError(
            f"root={str(root)!r} is not a directory; pass an existing data directory, None, or download=True"
        )
    bundle = entry[1](root, download=download, verify=verify)
    return bundle.to(device)


def _env_dirs() -> list[Path]:
    return [Path(part).expanduser() for part in os.environ.get("FUNLEARN_DATA", "").split(os.pathsep) if part]


def search_dirs(root: Path | None) -> list[tuple[Path, str]]:
    """``root`` then each ``$FUNLEARN_DATA`` directory, each with where it came from (for messages)."""
    dirs = [] if root is None else [(Path(root), "root")]
    return dirs + [(path, "$FUNLEARN_DATA") for path in _env_dirs()]


def download_root(root: Path | None) -> Path:
    """Where downloads go: ``root``, else the first ``$FUNLEARN_DATA`` directory, else ~/.cache/funlearn."""
    if root is not None:
        return Path(root)
    env = _env_dirs()
    return env[0] if env else Path.home() / ".cache" / "funlearn"


def not_found_message(name: str, tried: list[tuple[Path, str]], wanted: str, how: str) -> str:
    """The error text for data that is nowhere: every place tried, and how to get the data."""
    places = "\n".join(f"  - {path} ({origin})" for path, origin in tried) or "  (no directory to search)"
    env = "" if os.environ.get("FUNLEARN_DATA") else "\n  ($FUNLEARN_DATA is not set)"
    return (
        f"{name}: {wanted} not found. Tried:\n{places}{env}\n"
        f"To get it: {how}; or pass root=DIR, or set FUNLEARN_DATA=DIR."
    )
