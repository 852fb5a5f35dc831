"""Merged forget/retain steps: fresh reshuffle per pass, epoch length, determinism, resuming, ranks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from funlearn.data import (
    BatchSampler,
    DatasetBundle,
    TensorLoader,
    merged_batches,
    random_split,
    split_dataloaders,
    split_loaders,
)


def ids_loader(ids: torch.Tensor, batch_size: int, **kwargs) -> TensorLoader:
    return TensorLoader(ids.float()[:, None], ids, batch_size, **kwargs)


def split_ids(steps: list[dict], name: str) -> list[torch.Tensor]:
    return [step[name][1] for step in steps]


FORGET = torch.arange(10)  # 4 batches of 3 (last one 1)
RETAIN = torch.arange(100, 150)  # 10 batches of 5


def make(epoch_length="retain", seed=0):
    return merged_batches(
        ids_loader(FORGET, 3, seed=1), ids_loader(RETAIN, 5, seed=2), epoch_length=epoch_length, seed=seed
    )


def test_forget_passes_cover_once_and_reshuffle():
    merged = make()
    assert len(merged) == 10
    steps = list(merged.iter_from(0))
    assert len(steps) == 10
    forget = split_ids(steps, "forget")
    first, second = torch.cat(forget[0:4]), torch.cat(forget[4:8])
    # Each pass over the forget split sees every forget sample exactly once...
    assert torch.equal(torch.sort(first).values, FORGET) and torch.equal(torch.sort(second).values, FORGET)
    # ...in a new order, not a replay of the first pass (torchunlearn's D5).
    assert not torch.equal(first, second)
    third_partial = torch.cat(forget[8:10])
    assert third_partial.numel() == 6 and third_partial.unique().numel() == 6
    # The retain split is traversed exactly once.
    assert torch.equal(torch.sort(torch.cat(split_ids(steps, "retain"))).values, RETAIN)


def test_augmentation_is_fresh_in_every_pass():
    x = torch.rand(4, 3, 8, 8)
    forget = TensorLoader(x, torch.arange(4), 4, augment="crop_flip", seed=0)
    retain = ids_loader(torch.arange(40), 4)
    steps = list(merged_batches(forget, retain).iter_from(0))
    views = {}
    for step in steps:
        xb, yb = step["forget"]
        for image, i in zip(xb, yb.tolist(), strict=True):
            views.setdefault(i, []).append(image)
    for i, images in views.items():
        assert len(images) == 10
        distinct = {tuple(image.flatten().tolist()) for image in images}
        assert len(distinct) > 5, f"sample {i}: the same augmented tensors are replayed"


def test_epoch_length_semantics():
    assert len(make("retain")) == 10
    by_forget = make("forget")
    assert len(by_forget) == 4
    steps = list(by_forget.iter_from(0))
    assert torch.equal(torch.sort(torch.cat(split_ids(steps, "forget"))).values, FORGET)
    assert torch.cat(split_ids(steps, "retain")).unique().numel() == 20  # 4 of the 10 retain batches
    fixed = make(23)
    steps = list(fixed.iter_from(0))
    assert len(fixed) == len(steps) == 23
    retain = split_ids(steps, "retain")  # passes of 10 batches: two full ones, then 3 batches
    assert torch.equal(torch.sort(torch.cat(retain[10:20])).values, RETAIN)
    assert not torch.equal(torch.cat(retain[0:10]), torch.cat(retain[10:20]))


@pytest.mark.parametrize("bad", ["longest", 0, -3, 2.5, True])
def test_bad_epoch_length(bad):
    with pytest.raises(ValueError, match=r"epoch_length must be 'retain', 'forget' or a positive int"):
        make(bad)


def test_empty_loader_is_rejected():
    empty = ids_loader(torch.arange(2), 5, drop_last=True)
    with pytest.raises(ValueError, match=r"forget_loader has no batches"):
        merged_batches(empty, ids_loader(RETAIN, 5))


def test_deterministic_for_a_seed_and_epochs_differ():
    def run(merged, epoch):
        return [torch.cat([s["forget"][1], s["retain"][1]]) for s in merged.iter_from(epoch)]

    torch.manual_seed(0)
    a = run(make(seed=5), 1)
    torch.manual_seed(1)
    b = run(make(seed=5), 1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(torch.cat(a), torch.cat(run(make(seed=6), 1)))
    assert not torch.equal(torch.cat(a), torch.cat(run(make(seed=5), 2)))


def test_iteration_advances_epochs_and_set_epoch_pins():
    merged = make()
    first, second = list(merged), list(merged)
    assert not torch.equal(torch.cat(split_ids(first, "retain")), torch.cat(split_ids(second, "retain")))
    merged.set_epoch(0)
    again = list(merged)
    assert all(
        torch.equal(p, q) for p, q in zip(split_ids(first, "forget"), split_ids(again, "forget"), strict=True)
    )


def test_resume_at_any_step():
    merged = make(17)
    full = list(merged.iter_from(3))
    for start in (0, 4, 5, 9, 16, 17):
        resumed = list(merged.iter_from(3, start))
        assert len(resumed) == 17 - start
        for p, q in zip(full[start:], resumed, strict=True):
            assert torch.equal(p["forget"][1], q["forget"][1]) and torch.equal(p["retain"][1], q["retain"][1])
    with pytest.raises(ValueError, match=r"start_step=18 must lie in \[0, 17\]"):
        merged.iter_from(0, 18)


def test_plain_dataloaders_are_reiterated_per_pass():
    gen = torch.Generator().manual_seed(0)
    forget = DataLoader(TensorDataset(FORGET), batch_size=3, shuffle=True, generator=gen)
    retain = DataLoader(TensorDataset(RETAIN), batch_size=5, shuffle=False)
    steps = list(merged_batches(forget, retain))
    forget_ids = [step["forget"][0] for step in steps]
    first, second = torch.cat(forget_ids[0:4]), torch.cat(forget_ids[4:8])
    assert torch.equal(torch.sort(first).values, FORGET) and torch.equal(torch.sort(second).values, FORGET)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_dataloaders_with_batch_sampler_are_keyed_like_tensor_loaders(num_workers):
    def dataloader(ids, batch_size, seed):
        return DataLoader(
            TensorDataset(ids.float()[:, None], ids),
            batch_sampler=BatchSampler(ids.numel(), batch_size, seed=seed),
            num_workers=num_workers,
        )

    with_dataloaders = merged_batches(dataloader(FORGET, 3, 1), dataloader(RETAIN, 5, 2), seed=4)
    with_tensors = merged_batches(ids_loader(FORGET, 3, seed=1), ids_loader(RETAIN, 5, seed=2), seed=4)
    for p, q in zip(with_dataloaders.iter_from(2, 3), with_tensors.iter_from(2, 3), strict=True):
        assert torch.equal(p["forget"][1], q["forget"][1]) and torch.equal(p["retain"][1], q["retain"][1])


def test_merged_split_dataloaders_equal_merged_split_loaders():
    # The lazy DataLoader path (augmenting in a worker process) reproduces the in-memory steps exactly.
    x = torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(30) % 3
    bundle = DatasetBundle("toy", x, y, x[:6], y[:6], 3, 3, 8, (0.5,) * 3, (0.25,) * 3, augment=True)
    split = random_split(y, 0.2, seed=1)
    dataset = [(image, int(label)) for image, label in zip(x, y, strict=True)]
    lazy = split_dataloaders(dataset, dataset[:6], split, 4, seed=2, num_workers=1)
    in_memory = split_loaders(bundle, split, 4, seed=2)
    global_state = torch.get_rng_state()
    steps_lazy = list(merged_batches(lazy["forget"], lazy["retain"], seed=5).iter_from(1))
    assert torch.equal(torch.get_rng_state(), global_state)  # worker seeds come from explicit keys
    steps_memory = list(merged_batches(in_memory["forget"], in_memory["retain"], seed=5).iter_from(1))
    assert len(steps_lazy) == len(steps_memory) == 6
    for p, q in zip(steps_lazy, steps_memory, strict=True):
        for name in ("forget", "retain"):
            assert torch.equal(p[name][0], q[name][0]) and torch.equal(p[name][1], q[name][1])


def test_rank_shards_of_merged_steps_are_disjoint_and_covering():
    world = 2
    per_rank = []
    for rank in range(world):
        forget = ids_loader(FORGET, 2, seed=1, rank=rank, world_size=world)
        retain = ids_loader(RETAIN, 5, seed=2, rank=rank, world_size=world)
        per_rank.append(list(merged_batches(forget, retain, seed=3).iter_from(0)))
    assert len(per_rank[0]) == len(per_rank[1]) == 5  # 50 retain samples / (5 * 2) per step
    # Steps 0-2 are the first forget pass (10 samples / 4 per step, rounded up).
    forget_pass = torch.cat([step["forget"][1] for steps in per_rank for step in steps[:3]])
    assert torch.equal(torch.sort(forget_pass).values, FORGET)
    retain_all = torch.cat([step["retain"][1] for steps in per_rank for step in steps])
    assert torch.equal(torch.sort(retain_all).values, RETAIN)
