"""Evaluation during a run: accuracies against a direct computation, fixed random subsets, metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import funlearn as fl
from funlearn.engine import Evaluator, accuracies, fixed_subset, predict_logits


@pytest.fixture(scope="module")
def setup():
    digits = fl.load_dataset("digits")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    model, params, buffers = fl.functional(net, mean=digits.mean, std=digits.std)
    buffers = {**buffers, "2.running_mean": torch.full((16,), 0.3), "2.running_var": torch.full((16,), 2.0)}
    return digits, model, params, buffers


def test_accuracies_equal_an_eval_mode_forward_of_the_whole_set(setup):
    digits, model, params, buffers = setup
    net = fl.load_into_module(model.module, params, buffers).eval()
    with torch.no_grad():
        direct = (net((digits.test_x - digits.mean[0]) / digits.std[0]).argmax(1) == digits.test_y).float().mean()
    loaders = {"test": fl.TensorLoader(digits.test_x, digits.test_y, 100, shuffle=False),
               "shuffled": fl.TensorLoader(digits.test_x, digits.test_y, 33, seed=3),
               "list": [(digits.test_x[i : i + 50], digits.test_y[i : i + 50]) for i in range(0, 359, 50)]}
    accs = accuracies(model, params, buffers, loaders)
    assert list(accs) == ["acc/test", "acc/shuffled", "acc/list"]
    assert all(a == pytest.approx(100 * direct.item()) for a in accs.values())
    logits, labels = predict_logits(model, params, buffers, loaders["shuffled"])
    assert logits.shape == (359, 10) and sorted(labels.tolist()) == sorted(digits.test_y.tolist())


def test_a_tensorloader_subset_is_uniform_fixed_and_seeded(setup):
    digits = setup[0]
    indices = torch.arange(0, 1438, 2)  # the loader already selects a subset of the storage
    loader = fl.TensorLoader(digits.train_x, digits.train_y, 64, indices=indices)
    sub = fixed_subset(loader, 100, seed=1)
    rows = sub.indices.tolist()
    assert len(rows) == len(set(rows)) == 100 and set(rows) <= set(indices.tolist())
    assert rows != indices[:100].tolist()  # not "the first batches"
    assert rows == fixed_subset(loader, 100, seed=1).indices.tolist()
    assert rows != fixed_subset(loader, 100, seed=2).indices.tolist()
    xs = torch.cat([x for x, _ in sub])
    assert torch.equal(xs, torch.cat([x for x, _ in sub]))  # the same samples at every evaluation
    assert torch.equal(xs, digits.train_x[sub.indices])
    assert fixed_subset(loader, 10_000, seed=1) is loader


def test_a_generic_loader_subset_is_materialised_once(setup):
    digits = setup[0]
    data = [(digits.test_x[i : i + 40], digits.test_y[i : i + 40]) for i in range(0, 359, 40)]
    sub = fixed_subset(data, 75, seed=0)
    xs, ys = torch.cat([x for x, _ in sub]), torch.cat([y for _, y in sub])
    assert len(ys) == 75 and [len(y) for _, y in sub] == [40, 35]
    flat = digits.test_x.reshape(359, -1)
    positions = [int((flat == x.reshape(1, -1)).all(1).nonzero()[0]) for x in xs]
    assert positions == sorted(positions) and len(set(positions)) == 75  # distinct, in loader order
    assert torch.equal(ys, digits.test_y[positions])
    assert positions != list(range(75))
    again = fixed_subset(data, 75, seed=0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(sub, again))


def test_subset_draws_are_close_to_uniform():
    data = [(torch.arange(i, i + 10).float().unsqueeze(1), torch.arange(i, i + 10)) for i in range(0, 100, 10)]
    counts = torch.zeros(100)
    for seed in range(400):
        counts[torch.cat([y for _, y in fixed_subset(data, 10, seed)])] += 1
    # each sample is picked with probability 0.1: 40 expected picks per sample, std 6
    assert counts.sum() == 4000 and 15 < counts.min() and counts.max() < 65


def test_evaluator_adds_user_metrics_and_validates(setup):
    digits, model, params, buffers = setup
    loader = fl.TensorLoader(digits.test_x, digits.test_y, 100, shuffle=False)
    evaluator = Evaluator(model, {"test": loader}, [lambda p, b: {"norm": fl.tree.global_norm(p)},
                                                     lambda p, b: {"one": 1}])
    out = evaluator(params, buffers)
    assert set(out) == {"acc/test", "norm", "one"} and isinstance(out["norm"], float)
    assert out["norm"] == pytest.approx(float(fl.tree.global_norm(params)))
    with pytest.raises(ValueError, match="eval_subset must be a positive int"):
        Evaluator(model, {"test": loader}, subset=0)
    with pytest.raises(ValueError, match="must yield \\(x, y\\) batches"):
        accuracies(model, params, buffers, {"bad": [{"x": 1}]})
