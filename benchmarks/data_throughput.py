"""Throughput of one training epoch: funlearn's in-memory TensorLoader vs a plain DataLoader.

Both shuffle Fashion-MNIST's 60000 training images in batches of 128 and yield float32 images in
[0, 1] with int64 labels. The DataLoader gets the advantage of pre-converted float32 tensors
(``TensorDataset``, ``shuffle=True``, ``num_workers=0``); the TensorLoader converts its uint8
storage per batch. Each figure is the median of several full epochs in this one process; the
ratio is printed at the end (target: >= 5x). A second table shows the cost of funlearn's batched
crop+flip on CIFAR-shaped data against torchvision's per-sample transforms in a DataLoader.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/data_throughput.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from funlearn.data import TensorLoader, load_dataset


def epoch_seconds(loader: Iterable, repeats: int, max_batches: int | None = None) -> list[float]:
    """Wall time of iterating ``loader`` ``repeats`` times (CPU tensors: each batch is materialised)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i, _batch in enumerate(loader):
            if max_batches is not None and i + 1 == max_batches:
                break
        times.append(time.perf_counter() - start)
    return times


class _TransformedTensors(Dataset):
    """uint8 images with a per-sample torchvision transform: the usual augmented DataLoader input."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), self.y[i]


def report(name: str, samples: int, times: list[float]) -> float:
    median = statistics.median(times)
    print(
        f"  {name:<44} {samples / median:>12,.0f} samples/s   (median {median * 1e3:8.1f} ms of {len(times)})"
    )
    return samples / median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    try:
        bundle = load_dataset("fashion_mnist")
    except FileNotFoundError as err:
        print(f"Fashion-MNIST not found, using digits instead ({str(err).splitlines()[0]})")
        bundle = load_dataset("digits")
    x_uint8, y = bundle.train_x, bundle.train_y
    n, bs = len(y), args.batch_size
    print(f"{bundle.name}: {n} training images {tuple(x_uint8.shape[1:])}, batch size {bs}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip

    x_float = x_uint8.float() / 255 if x_uint8.dtype == torch.uint8 else x_uint8
    ours = TensorLoader(x_uint8, y, bs, shuffle=True, seed=0)
    plain = DataLoader(TensorDataset(x_float, y), batch_size=bs, shuffle=True, num_workers=0)
    epoch_seconds(ours, 1)  # warm-up both
    epoch_seconds(plain, 1)
    print("full epoch, shuffled, float32 batches:")
    fast = report("funlearn TensorLoader (uint8 storage)", n, epoch_seconds(ours, args.repeats))
    report(
        "funlearn TensorLoader (float32 storage)",
        n,
        epoch_seconds(TensorLoader(x_float, y, bs), args.repeats),
    )
    slow = report(
        "DataLoader(TensorDataset(float32), shuffle)", n, epoch_seconds(plain, max(3, args.repeats // 2))
    )
    print(f"ratio TensorLoader / DataLoader: {fast / slow:.1f}x")

    # Augmentation: CIFAR-shaped uint8 data, random crop (padding 4) + horizontal flip.
    cifar_like = torch.randint(
        0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.arange(10_000) % 10
    batches = 40
    aug_ours = TensorLoader(cifar_like, labels, bs, augment="crop_flip", seed=0)
    train_tf = v2.Compose(
        [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)]
    )
    aug_plain = DataLoader(_TransformedTensors(cifar_like, labels, train_tf), batch_size=bs, shuffle=True)
    print(f"crop+flip on (3, 32, 32) uint8 images, {batches} batches:")
    fast_aug = report(
        "funlearn TensorLoader(augment='crop_flip')",
        batches * bs,
        epoch_seconds(aug_ours, args.repeats, batches),
    )
    slow_aug = report(
        "DataLoader + torchvision v2 per-sample", batches * bs, epoch_seconds(aug_plain, 3, batches)
    )
    print(f"ratio (augmented): {fast_aug / slow_aug:.1f}x")


if __name__ == "__main__":
    main()
