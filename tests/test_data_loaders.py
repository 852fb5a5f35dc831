"""In-memory batching: coverage, determinism, resuming, augmentation, rank shards, split loaders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from funlearn.data import (
    BatchSampler,
    DatasetBundle,
    TensorLoader,
    classwise_split,
    crop_flip,
    explicit_split,
    load_dataset,
    random_split,
    split_dataloaders,
    split_loaders,
)


def ids_loader(n: int, batch_size: int, **kwargs) -> TensorLoader:
    """A loader whose x carries each sample's id, so batches can be traced back to samples."""
    x = torch.arange(n, dtype=torch.float32)[:, None]
    return TensorLoader(x, torch.arange(n), batch_size, **kwargs)


def epoch_ids(loader, epoch=None) -> list[torch.Tensor]:
    if epoch is not None:
        loader.set_epoch(epoch)
    return [y for _, y in loader]


def test_every_sample_once_per_epoch_and_lengths():
    loader = ids_loader(10, 4)
    assert len(loader) == 3
    batches = epoch_ids(loader, 0)
    assert [b.numel() for b in batches] == [4, 4, 2]
    assert torch.equal(torch.sort(torch.cat(batches)).values, torch.arange(10))
    dropped = ids_loader(10, 4, drop_last=True)
    assert len(dropped) == 2 and sum(b.numel() for b in epoch_ids(dropped, 0)) == 8


def test_x_and_y_stay_paired_and_float_in_unit_range():
    x = torch.arange(6, dtype=torch.uint8).mul(50)[:, None, None, None].expand(6, 1, 2, 2).contiguous()
    loader = TensorLoader(x, torch.arange(6), 4, seed=3)
    for xb, yb in loader:
        assert xb.dtype == torch.float32
        assert torch.allclose(xb[:, 0, 0, 0], yb.float() * 50 / 255)


def test_unshuffled_is_in_order_and_indices_select_a_subset():
    loader = ids_loader(10, 3, shuffle=False, indices=torch.tensor([8, 1, 5, 6]))
    assert torch.cat(epoch_ids(loader)).tolist() == [8, 1, 5, 6]
    assert loader.num_samples == 4


def test_same_seed_same_batches_and_epochs_differ():
    a, b = ids_loader(50, 8, seed=1), ids_loader(50, 8, seed=1)
    torch.manual_seed(0)
    first = epoch_ids(a, 2)
    torch.manual_seed(99)
    state = torch.get_rng_state()
    assert all(torch.equal(p, q) for p, q in zip(first, epoch_ids(b, 2), strict=True))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never used
    assert not torch.equal(torch.cat(first), torch.cat(epoch_ids(a, 3)))
    assert not torch.equal(torch.cat(first), torch.cat(epoch_ids(ids_loader(50, 8, seed=2), 2)))


def test_plain_loop_reshuffles_and_set_epoch_pins():
    loader = ids_loader(30, 30)
    one, two = next(iter(loader))[1], next(iter(loader))[1]
    assert not torch.equal(one, two)
    loader.set_epoch(5)
    five = next(iter(loader))[1]
    loader.set_epoch(5)
    assert torch.equal(next(iter(loader))[1], five)


@pytest.mark.parametrize("augment", [None, "crop_flip"])
def test_iter_from_resumes_exactly(augment):
    x = torch.rand(23, 3, 8, 8)
    loader = TensorLoader(x, torch.arange(23), 5, augment=augment, seed=4)
    full = list(loader.iter_from(7))
    resumed = list(loader.iter_from(7, 3))
    assert len(full) == 5 and len(resumed) == 2
    for (xa, ya), (xb, yb) in zip(full[3:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    loader.set_epoch(7, start_batch=4)
    assert torch.equal(next(iter(loader))[0], full[4][0])
    with pytest.raises(ValueError, match=r"start_batch=6 must lie in \[0, 5\]"):
        loader.iter_from(7, 6)


def reference_crop_flip(x, offsets, flips, padding):
    """Per-sample slicing, the obvious way."""
    padded = F.pad(x, (padding,) * 4)
    h, w = x.shape[-2:]
    out = []
    for image, (r, c), flip in zip(padded, offsets.tolist(), flips.tolist(), strict=True):
        crop = image[:, r : r + h, c : c + w]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_crop_flip_matches_per_sample_slicing(dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(16, 3, 7, 9, generator=gen) * 255).to(dtype)
    offsets = torch.randint(0, 9, (16, 2), generator=gen)
    flips = torch.rand(16, generator=gen) < 0.5
    assert torch.equal(crop_flip(x, offsets, flips, 4), reference_crop_flip(x, offsets, flips, 4))


def test_augmented_batches_are_crops_of_the_samples():
    x = torch.rand(64, 1, 6, 6)
    loader = TensorLoader(x, torch.arange(64), 64, augment="crop_flip", padding=2, seed=0)
    xb, yb = next(iter(loader))
    shifted = flipped = 0
    for image, i in zip(xb, yb.tolist(), strict=True):
        padded = F.pad(x[i], (2,) * 4)
        crops = {(r, c): padded[:, r : r + 6, c : c + 6] for r in range(5) for c in range(5)}
        matches = [
            (r, c, f)
            for (r, c), crop in crops.items()
            for f in (False, True)
            if torch.equal(crop.flip(-1) if f else crop, image)
        ]
        assert matches, "every augmented image is a padded crop (possibly flipped) of its own sample"
        shifted += (matches[0][0], matches[0][1]) != (2, 2)
        flipped += matches[0][2]
    assert shifted > 40 and 16 < flipped < 48


@pytest.mark.parametrize("n", [40, 37])
def test_rank_shards_are_disjoint_covering_and_world_size_invariant(n):
    # 40 = 3 full global batches of 12 + 4 (ranks get 2, 1, 1); 37 leaves 1: ranks 1, 2 get an empty batch.
    batch_size, world = 4, 3
    x = torch.rand(n, 1, 4, 4)
    single = TensorLoader(x, torch.arange(n), batch_size * world, augment="crop_flip", seed=9)
    ranks = [
        TensorLoader(x, torch.arange(n), batch_size, augment="crop_flip", seed=9, rank=r, world_size=world)
        for r in range(world)
    ]
    assert {len(r) for r in ranks} == {len(single)} == {4}
    per_rank = [list(r.iter_from(2)) for r in ranks]
    ids = [torch.cat([y for _, y in batches]) for batches in per_rank]
    assert torch.equal(torch.sort(torch.cat(ids)).values, torch.arange(n))  # disjoint and covering
    assert [per_rank[r][-1][1].numel() for r in range(world)] == ([2, 1, 1] if n == 40 else [1, 0, 0])
    for b, (xs, ys) in enumerate(single.iter_from(2)):
        # The union of the ranks' batch b (interleaved) is the single-process batch b, augmentation included.
        parts = [per_rank[r][b] for r in range(world)]
        merged_y = torch.empty_like(ys)
        merged_x = torch.empty_like(xs)
        for r, (xr, yr) in enumerate(parts):
            merged_y[r::world], merged_x[r::world] = yr, xr
        assert torch.equal(merged_y, ys) and torch.equal(merged_x, xs)


def test_batch_sampler_drives_a_dataloader_like_a_tensor_loader():
    x = torch.arange(20, dtype=torch.float32)[:, None]
    sampler = BatchSampler(20, 6, seed=5)
    loader = DataLoader(TensorDataset(x, torch.arange(20)), batch_sampler=sampler)
    tensor_loader = TensorLoader(x, torch.arange(20), 6, seed=5)
    sampler.set_epoch(3)
    tensor_loader.set_epoch(3)
    for (_, a), (_, b) in zip(loader, tensor_loader, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, r"batch_size must be an int >= 1"),
        ({"rank": 2, "world_size": 2}, r"rank=2 must be below world_size=2"),
        ({"augment": "mixup"}, r"augment must be None or 'crop_flip'"),
        ({"indices": torch.tensor([0, 10])}, r"indices must lie in \[0, 10\)"),
        ({"seed": 1.5}, r"seed must be an int"),
    ],
)
def test_tensor_loader_validation(kwargs, message):
    args = {"batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        TensorLoader(torch.rand(10, 1, 2, 2), torch.arange(10), **args)


def test_split_loaders_random_on_digits():
    bundle = load_dataset("digits")
    split = random_split(bundle.train_y, 0.1, seed=0)
    loaders = split_loaders(bundle, split, 32, seed=1)
    assert set(loaders) == {"retain", "forget", "retain_eval", "forget_eval", "test"}
    assert loaders["forget"].num_samples == split.forget.numel() == 144
    assert loaders["retain"].num_samples == 1438 - 144 and loaders["test"].num_samples == 359
    forget_ids = torch.cat([y for _, y in loaders["forget_eval"]])
    assert torch.equal(forget_ids, bundle.train_y[split.forget])  # eval loaders keep index order
    xs = torch.cat([x for x, _ in loaders["forget_eval"]])
    assert torch.equal(xs, bundle.train_x[split.forget])
    assert loaders["forget"].augment is None  # digits: no augmentation
    shuffled = torch.cat([y for _, y in loaders["forget"]])
    assert torch.equal(torch.sort(shuffled).values, torch.sort(bundle.train_y[split.forget]).values)
    assert loaders["forget"].sampler.shuffle and not loaders["test"].sampler.shuffle


def test_split_loaders_classwise_and_size_check():
    bundle = load_dataset("digits")
    split = classwise_split(bundle.train_y, [0, 7], test_labels=bundle.test_y)
    loaders = split_loaders(bundle, split, 64, eval_batch_size=500)
    assert len(loaders["test"]) == 1
    assert set(torch.cat([y for _, y in loaders["test_forget"]]).tolist()) == {0, 7}
    assert 0 not in torch.cat([y for _, y in loaders["test_retain"]]).tolist()
    assert set(torch.cat([y for _, y in loaders["forget"]]).tolist()) == {0, 7}
    other = random_split(torch.arange(100) % 10, 0.1)
    with pytest.raises(ValueError, match=r"split covers 100 samples but digits has 1438"):
        split_loaders(bundle, other, 32)


def test_dataloader_path_matches_in_memory_per_rank():
    # 37 retain samples, batch 4 on 3 ranks: the last global batch holds 1 sample, ranks 1, 2 get none.
    x = torch.randint(0, 256, (40, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(40) % 4
    bundle = DatasetBundle("toy", x, y, x[:8], y[:8], 4, 3, 6, (0.5,) * 3, (0.25,) * 3, augment=True)
    split = explicit_split(40, [0, 13, 27])
    dataset = [(image, int(label)) for image, label in zip(x, y, strict=True)]
    seen = []
    for rank in range(3):
        lazy = split_dataloaders(dataset, dataset[:8], split, 4, seed=7, rank=rank, world_size=3)["retain"]
        memory = split_loaders(bundle, split, 4, seed=7, rank=rank, world_size=3)["retain"]
        lazy.batch_sampler.set_epoch(2)
        pairs = list(zip(lazy, memory.iter_from(2), strict=True))
        assert len(pairs) == 4
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        seen.append(torch.cat([yb for _, (_, yb) in pairs]))
        assert pairs[-1][0][1].numel() == (1 if rank == 0 else 0)
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.sort(y[split.retain]).values)
    assert sum(s.numel() for s in seen) == 37
