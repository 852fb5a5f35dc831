"""Forgetting scenarios: exact sizes and per-class counts, determinism, validation, spec strings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from funlearn.data import (
    Split,
    classwise_split,
    explicit_split,
    load_dataset,
    make_split,
    parse_scenario,
    random_split,
    subclass_split,
)


@pytest.fixture(scope="module")
def fashion():
    try:
        return load_dataset("fashion_mnist")
    except FileNotFoundError as err:
        pytest.skip(
            "Fashion-MNIST IDX files not found (searched $FUNLEARN_DATA, /usr/share/datasets/fashion-mnist; "
            f"install the Debian package dataset-fashion-mnist): {str(err).splitlines()[0]}"
        )


def assert_partition(split: Split, n: int) -> None:
    """Sorted, disjoint, covering, int64."""
    for part in (split.retain, split.forget):
        assert part.dtype == torch.int64
        assert torch.equal(part, torch.sort(part).values)
    both = torch.cat([split.retain, split.forget])
    assert both.numel() == n
    assert torch.equal(torch.sort(both).values, torch.arange(n))


# ----------------------------------------------------------------------------- random split


@pytest.mark.parametrize("ratio", [0.1, 0.01, 0.5])
def test_random_stratified_exact_counts_on_fashion_mnist(fashion, ratio):
    labels = fashion.train_y
    split = random_split(labels, ratio, seed=3)
    n = labels.numel()
    assert split.forget.numel() == round(ratio * n)
    assert split.retain.numel() == n - round(ratio * n)
    # Fashion-MNIST has 6000 images per class, so every class gives exactly ratio * 6000.
    per_class = torch.bincount(labels, minlength=10)
    expected = per_class * round(ratio * n) // n
    assert torch.equal(torch.bincount(labels[split.forget], minlength=10), expected)
    assert_partition(split, n)


def test_random_split_same_seed_same_split_whatever_the_global_rng(fashion):
    labels = fashion.train_y
    torch.manual_seed(1)
    np.random.seed(1)
    first = random_split(labels, 0.1, seed=7)
    torch.manual_seed(12345)
    torch.rand(1000)
    np.random.seed(999)
    state_torch, state_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    second = random_split(labels, 0.1, seed=7)
    assert torch.equal(first.forget, second.forget)
    assert torch.equal(first.retain, second.retain)
    # The split never touched the global RNGs.
    assert torch.equal(torch.get_rng_state(), state_torch)
    assert np.array_equal(np.random.get_state()[1], state_np)


def test_random_split_different_seeds_differ(fashion):
    a = random_split(fashion.train_y, 0.1, seed=0).forget
    b = random_split(fashion.train_y, 0.1, seed=1).forget
    assert a.numel() == b.numel()
    assert not torch.equal(a, b)
    overlap = np.intersect1d(a.numpy(), b.numpy()).size
    assert overlap < 0.2 * a.numel()  # independent 10% draws overlap about 10%


def test_classes_of_equal_size_get_different_positions():
    # torchunlearn's D2: equal-size classes reseeded identically picked the same within-class positions.
    labels = torch.arange(1000) % 2  # two interleaved classes of 500
    split = random_split(labels, 0.1, seed=0)
    pos0 = split.forget[labels[split.forget] == 0] // 2
    pos1 = split.forget[labels[split.forget] == 1] // 2
    assert pos0.numel() == pos1.numel() == 50
    assert not torch.equal(pos0, pos1)


def test_largest_remainder_apportionment_by_hand():
    # Classes of 7, 2 and 1 samples; ratio 0.3 -> 3 samples; quotas 2.1, 0.6, 0.3 -> floors 2, 0, 0,
    # and the one missing sample goes to the largest remainder (class 1).
    labels = torch.tensor([0] * 7 + [1] * 2 + [2])[
        torch.randperm(10, generator=torch.Generator().manual_seed(0))
    ]
    split = random_split(labels, 0.3, seed=5)
    assert torch.bincount(labels[split.forget], minlength=3).tolist() == [2, 1, 0]
    # Ties go to the lower class: counts 5, 3, 2 at ratio 0.5 -> quotas 2.5, 1.5, 1.0 -> 3, 1, 1.
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    assert torch.bincount(labels[random_split(labels, 0.5).forget]).tolist() == [3, 1, 1]


def test_total_is_exactly_round_ratio_n_for_unequal_classes():
    from sklearn.datasets import load_digits

    labels = torch.tensor(load_digits().target)
    class_counts = torch.bincount(labels)
    for ratio in (0.1, 0.033, 0.25, 0.77):
        split = random_split(labels, ratio, seed=2)
        total = round(ratio * labels.numel())
        assert split.forget.numel() == total
        got = torch.bincount(labels[split.forget], minlength=10)
        quota = class_counts * total / labels.numel()
        assert bool((got >= quota.floor()).all()) and bool((got <= quota.ceil()).all())
        assert_partition(split, labels.numel())


def test_random_count_and_uniform(fashion):
    labels = fashion.train_y
    counted = random_split(labels, count=500, seed=1)
    assert counted.forget.numel() == 500
    assert torch.equal(torch.bincount(labels[counted.forget], minlength=10), torch.full((10,), 50))
    uniform = random_split(labels, 0.1, stratified=False, seed=1)
    assert uniform.forget.numel() == 6000
    assert_partition(uniform, labels.numel())
    per_class = torch.bincount(labels[uniform.forget], minlength=10)
    assert not bool((per_class == 600).all())  # not stratified...
    assert int(per_class.min()) > 450 and int(per_class.max()) < 750  # ...but uniform
    assert "uniform" in uniform.description and "6000 of 60000" in uniform.description


# -------------------------------------------------------------------------------- classwise


def test_classwise_forget_is_exactly_the_class(fashion):
    split = classwise_split(fashion.train_y, 3, test_labels=fashion.test_y)
    assert torch.equal(split.forget, (fashion.train_y == 3).nonzero().squeeze(1))
    assert torch.equal(split.retain, (fashion.train_y != 3).nonzero().squeeze(1))
    assert torch.equal(split.test_forget, (fashion.test_y == 3).nonzero().squeeze(1))
    assert torch.equal(split.test_retain, (fashion.test_y != 3).nonzero().squeeze(1))
    assert split.forget.numel() == 6000 and split.test_forget.numel() == 1000
    assert split.forget_classes == (3,)
    assert_partition(split, 60000)


def test_classwise_several_classes():
    labels = torch.tensor([0, 1, 2, 3, 5, 5, 3, 1, 0, 2])
    test = torch.tensor([5, 0, 3, 1])
    split = classwise_split(labels, [5, 3], test_labels=test)
    assert split.forget.tolist() == [3, 4, 5, 6]
    assert split.retain.tolist() == [0, 1, 2, 7, 8, 9]
    assert split.test_forget.tolist() == [0, 2] and split.test_retain.tolist() == [1, 3]
    assert split.forget_classes == (3, 5)
    assert classwise_split(labels, 1).test_retain is None


def test_subclass_split():
    labels = torch.arange(200) % 4  # 50 per class
    split = subclass_split(labels, 2, 0.3, seed=4)
    assert split.forget.numel() == 15
    assert bool((labels[split.forget] == 2).all())
    assert_partition(split, 200)
    assert torch.equal(split.forget, subclass_split(labels, 2, 0.3, seed=4).forget)
    assert not torch.equal(split.forget, subclass_split(labels, 2, 0.3, seed=5).forget)
    assert split.forget_classes is None


def test_explicit_split():
    split = explicit_split(10, [7, 2, 5])
    assert split.forget.tolist() == [2, 5, 7]
    assert split.retain.tolist() == [0, 1, 3, 4, 6, 8, 9]
    from_labels = explicit_split(torch.zeros(10, dtype=torch.long), torch.tensor([7, 2, 5]))
    assert torch.equal(from_labels.forget, split.forget)


# ------------------------------------------------------------------------------- bad input

LABELS = torch.arange(100) % 10


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: random_split(LABELS, 1.5), r"ratio must lie strictly between 0 and 1 \(got 1.5\)"),
        (lambda: random_split(LABELS, 0.0), r"ratio must lie strictly between 0 and 1"),
        (lambda: random_split(LABELS, 1.0), r"ratio must lie strictly between 0 and 1"),
        (lambda: random_split(LABELS, -0.2), r"ratio must lie strictly between 0 and 1"),
        (lambda: random_split(LABELS, count=101), r"count=101 exceeds the 100 samples; pass count < 100"),
        (lambda: random_split(LABELS, count=100), r"empty retain set"),
        (lambda: random_split(LABELS, 0.004), r"forgets 0 of 100 samples \(empty forget set\)"),
        (lambda: random_split(LABELS), r"exactly one of ratio .* or count"),
        (lambda: random_split(LABELS, 0.1, count=5), r"exactly one of ratio .* or count"),
        (lambda: random_split(LABELS.float(), 0.1), r"labels must hold integer class ids"),
        (
            lambda: classwise_split(LABELS, 12),
            r"classes: class 12 does not exist in the labels \(classes present: 0..9\)",
        ),
        (lambda: classwise_split(LABELS, [3, 3]), r"classes repeats a class"),
        (lambda: classwise_split(LABELS, []), r"classes is empty"),
        (
            lambda: classwise_split(LABELS, list(range(10))),
            r"covers every class, leaving an empty retain set",
        ),
        (lambda: subclass_split(LABELS, 11, 0.5), r"cls: class 11 does not exist"),
        (lambda: subclass_split(LABELS, 1, 1.0), r"ratio must lie strictly between 0 and 1"),
        (lambda: subclass_split(LABELS, 1, 0.01), r"rounds to 0 \(empty forget set\)"),
        (lambda: explicit_split(100, [3, 100, -1]), r"forget_indices: \[100, -1\] out of range \[0, 100\)"),
        (lambda: explicit_split(100, [3, 4, 3]), r"forget_indices: \[3\] repeated; pass each index once"),
        (lambda: explicit_split(100, []), r"forget_indices must be a non-empty"),
        (lambda: explicit_split(3, [0, 1, 2]), r"empty retain set"),
        (lambda: explicit_split(100, [1.5]), r"forget_indices must be integers"),
    ],
)
def test_bad_input_names_argument_and_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------ spec strings


def test_parse_scenario_specs():
    assert parse_scenario("random:0.1").ratio == 0.1
    assert parse_scenario("random:500").count == 500
    assert parse_scenario("random:0.1:uniform").stratified is False
    assert parse_scenario("class:3").classes == (3,)
    assert parse_scenario("class:3,5").classes == (3, 5)
    sub = parse_scenario("subclass:3:0.5")
    assert (sub.kind, sub.classes, sub.ratio) == ("subclass", (3,), 0.5)
    assert parse_scenario("indices:some/dir/f.txt").path == "some/dir/f.txt"


def test_make_split_matches_the_functions(tmp_path):
    train, test = torch.arange(300) % 3, torch.arange(30) % 3
    assert torch.equal(
        make_split("random:0.1", train, seed=2).forget, random_split(train, 0.1, seed=2).forget
    )
    assert make_split("random:40", train).forget.numel() == 40
    uniform = make_split("random:0.1:uniform", train, seed=2).forget
    assert torch.equal(uniform, random_split(train, 0.1, stratified=False, seed=2).forget)
    cls = make_split("class:1,2", train, test)
    assert cls.forget_classes == (1, 2) and cls.test_forget.numel() == 20
    sub = make_split("subclass:2:0.5", train, seed=1)
    assert torch.equal(sub.forget, subclass_split(train, 2, 0.5, seed=1).forget)
    path = tmp_path / "forget.txt"
    path.write_text("5\n\n  17\n# a comment\n2  # trailing\n")
    assert make_split(f"indices:{path}", train).forget.tolist() == [2, 5, 17]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("random", r"has no kind"),
        ("shuffle:0.1", r"unknown kind 'shuffle'"),
        ("random:abc", r"count 'abc' is not an integer"),
        ("random:1.5", r"ratio must lie strictly between 0 and 1"),
        ("random:0.1:sorted", r"mode 'sorted' must be 'stratified' or 'uniform'"),
        ("random:0", r"count must be a positive integer"),
        ("class:", r"class takes a comma-separated class list"),
        ("class:3,x", r"class 'x' is not an integer"),
        ("subclass:3", r"subclass takes a class and a ratio"),
        ("indices:", r"names no file"),
        ("random:__import__('os')", r"is not an integer"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_scenario(spec)


def test_bad_indices_file(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1\n2\nthree\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: 'three' is not an integer index"):
        make_split(f"indices:{path}", torch.arange(10) % 2)
    with pytest.raises(FileNotFoundError, match=r"does not exist; write one index per line"):
        make_split(f"indices:{tmp_path / 'missing.txt'}", torch.arange(10) % 2)
    path.write_text("1\n1\n")
    with pytest.raises(ValueError, match=r"repeated"):
        make_split(f"indices:{path}", torch.arange(10) % 2)
