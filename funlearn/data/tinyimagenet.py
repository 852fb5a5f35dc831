"""TinyImageNet (200 classes, 64x64 RGB) from its standard folder layout::

    tiny-imagenet-200/
      wnids.txt                          one WordNet id per line (the 200 classes)
      words.txt                          optional: "<wnid>\\t<names>" lines (class names)
      train/<wnid>/images/*.JPEG         500 training images per class
      val/images/*.JPEG                  10000 labelled images, used as the test set
      val/val_annotations.txt            "<file>\\t<wnid>\\t..." lines

Class ``k`` is the ``k``-th wnid in sorted order (as ``torchvision.datasets.ImageFolder`` numbers
them). ``load_dataset("tinyimagenet")`` decodes everything into uint8 tensors (about 1.3 GB);
:class:`TinyImageNetFolder` reads the same files lazily for a ``DataLoader``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from funlearn.data.bundle import (
    DatasetBundle,
    download_root,
    not_found_message,
    register_dataset,
    search_dirs,
)

__all__ = ["TinyImageNetFolder"]

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2770, 0.2691, 0.2821)


@dataclass(frozen=True)
class _Index:
    directory: Path
    wnids: tuple[str, ...]
    class_names: tuple[str, ...]
    files: dict[str, list[Path]]  # "train" / "val"
    labels: dict[str, torch.Tensor]


def find_tinyimagenet(root: Path | None, download: bool = False) -> Path:
    """The ``tiny-imagenet-200`` directory (searched like every dataset; downloaded if allowed)."""
    tried = []
    for base, origin in search_dirs(root):
        for directory in (base / FOLDER, base):
            tried.append((directory, origin))
            if (directory / "wnids.txt").is_file():
                return directory
    target = download_root(root)
    how = f"load_dataset('tinyimagenet', download=True) downloads {URL} into {target}"
    message = not_found_message("tinyimagenet", tried, f"{FOLDER}/wnids.txt", how)
    if not download:
        raise FileNotFoundError(message)
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, str(target), md5=MD5)
    except (OSError, RuntimeError) as err:
        raise FileNotFoundError(f"{message}\nDownloading into {target} failed: {err}") from err
    return target / FOLDER


def _index(directory: Path) -> _Index:
    """Files and labels of both splits; errors name the offending file."""
    wnids = tuple(
        sorted(line.strip() for line in (directory / "wnids.txt").read_text().splitlines() if line.strip())
    )
    label_of = {wnid: k for k, wnid in enumerate(wnids)}
    names = dict.fromkeys(wnids, "")
    words = directory / "words.txt"
    if words.is_file():
        for line in words.read_text().splitlines():
            wnid, _, text = line.partition("\t")
            if wnid in names:
                names[wnid] = text.strip()
    train_files, train_labels = [], []
    for wnid in wnids:
        images = sorted((directory / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise FileNotFoundError(
                f"tinyimagenet: no train/{wnid}/images/*.JPEG under {directory}; the copy is incomplete"
            )
        train_files += images
        train_labels += [label_of[wnid]] * len(images)
    annotations = directory / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(f"tinyimagenet: {annotations} is missing; the copy is incomplete")
    val_files, val_labels = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise ValueError(f"{annotations}:{number}: expected '<file>\\t<wnid>' with a wnid from wnids.txt")
        val_files.append(directory / "val" / "images" / fields[0])
        val_labels.append(label_of[fields[1]])
    if not val_files:
        raise ValueError(f"tinyimagenet: {annotations} lists no images; the copy is incomplete")
    return _Index(
        directory,
        wnids,
        tuple(names[w] or w for w in wnids),
        {"train": train_files, "val": val_files},
        {"train": torch.tensor(train_labels), "val": torch.tensor(val_labels)},
    )


def _decode(path: Path) -> torch.Tensor:
    """One image file as a (3, H, W) uint8 tensor (greyscale images are expanded to RGB)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def _decode_all(files: list[Path]) -> torch.Tensor:
    """Decode every file (threads) and stack to (N, 3, H, W) uint8; all must share one size."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(_decode, files))
    shape = images[0].shape
    for path, image in zip(files, images, strict=True):
        if image.shape != shape:
            raise ValueError(
                f"tinyimagenet: {path} is {tuple(image.shape)}, expected {tuple(shape)} like the others"
            )
    return torch.stack(images)


def load_tinyimagenet(root: Path | None, *, download: bool = False, verify: bool = True) -> DatasetBundle:
    """Decode TinyImageNet train and val (as the test set) into memory as uint8 tensors."""
    index = _index(find_tinyimagenet(root, download))
    train_x = _decode_all(index.files["train"])
    return DatasetBundle(
        name="tinyimagenet",
        train_x=train_x,
        train_y=index.labels["train"],
        test_x=_decode_all(index.files["val"]),
        test_y=index.labels["val"],
        num_classes=len(index.wnids),
        channels=3,
        image_size=int(train_x.shape[-1]),
        mean=MEAN,
        std=STD,
        augment=True,
        class_names=index.class_names,
        source=str(index.directory),
    )


class TinyImageNetFolder(Dataset):
    """TinyImageNet read lazily, one file per ``__getitem__``, for a ``torch.utils.data.DataLoader``.

    ``split`` is ``"train"`` or ``"val"`` (the test set). Items are ``(image, label)`` with the
    decoded ``(3, 64, 64)`` uint8 image, passed through ``transform`` when given; ``targets``
    holds every label (int64). :func:`funlearn.data.split_dataloaders` batches, converts and
    augments them.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        download: bool = False,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val' (got {split!r})")
        index = _index(find_tinyimagenet(None if root is None else Path(root).expanduser(), download))
        self.files = index.files[split]
        self.targets = index.labels[split]
        self.classes = index.wnids
        self.class_names = index.class_names
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = _decode(self.files[i])
        return (image if self.transform is None else self.transform(image)), int(self.targets[i])


register_dataset("tinyimagenet", load_tinyimagenet)
