"""Collecting predictions (eval mode, batched, seeded subsets) and the accuracies computed from them."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cnn

import funlearn as fl


def _data(n: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture
def trained_bn_model():
    """A CNN whose BatchNorm running statistics differ from their initial values (so eval mode matters)."""
    model, params, buffers = fl.functional(make_cnn())
    x, _ = _data(64, seed=3)
    _, buffers = model.apply(params, buffers, x * 3 + 1, train=True)
    return model, params, buffers


def test_collect_predictions_equals_one_eval_mode_forward_pass(trained_bn_model):
    model, params, buffers = trained_bn_model
    x, y = _data()
    preds = fl.collect_predictions(model, params, buffers, (x, y), batch_size=16)
    net = fl.load_into_module(make_cnn(), params, buffers).eval()
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(preds.logits, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(preds.labels, y)
    assert not preds.logits.requires_grad


def test_a_loader_gives_the_same_predictions_as_tensors(trained_bn_model):
    model, params, buffers = trained_bn_model
    x, y = _data()
    loader = fl.TensorLoader(x, y, batch_size=7, shuffle=False)
    a = fl.collect_predictions(model, params, buffers, loader)
    b = fl.collect_predictions(model, params, buffers, (x, y))
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def test_limit_is_a_fixed_seeded_subset_not_a_prefix(trained_bn_model):
    model, params, buffers = trained_bn_model
    x, y = _data(200)
    full = fl.collect_predictions(model, params, buffers, (x, y))
    sub = fl.collect_predictions(model, params, buffers, (x, y), limit=30, seed=5)
    again = fl.collect_predictions(
        model, params, buffers, fl.TensorLoader(x, y, 64, shuffle=False), limit=30, seed=5
    )
    other = fl.collect_predictions(model, params, buffers, (x, y), limit=30, seed=6)
    assert len(sub) == 30
    torch.testing.assert_close(sub.logits, again.logits, rtol=1e-5, atol=1e-5)  # tensors and loaders agree
    # the rows are real rows of the full predictions, in order, and not the first 30
    match = (sub.logits[:, None, :] - full.logits[None, :, :]).abs().amax(-1).argmin(1)
    assert torch.all(match[1:] > match[:-1]) and not torch.equal(match, torch.arange(30))
    assert not torch.equal(sub.labels, other.labels) or not torch.equal(sub.logits, other.logits)
    assert len(full.subset(500)) == 200  # a limit above N keeps everything


def test_predictions_validate_their_input():
    with pytest.raises(ValueError, match="labels must lie in"):
        fl.Predictions(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="rows"):
        fl.Predictions(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="diverged"):
        fl.Predictions(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="empty"):
        fl.Predictions(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        fl.Predictions(torch.zeros(2, 2), torch.zeros(2))
    model, params, buffers = fl.functional(make_cnn())
    with pytest.raises(ValueError, match="limit"):
        fl.collect_predictions(model, params, buffers, _data(), limit=0)


def test_accuracies_match_a_direct_count():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 2, 1])
    assert fl.accuracy_percent(fl.Predictions(logits, labels)) == pytest.approx(50.0)
    p = fl.Predictions(logits, labels)
    right = fl.Predictions(logits[:2], torch.tensor([0, 1]))
    acc = fl.split_accuracies(fl.ModelPredictions(retain=right, forget=p, test=right, test_forget=p))
    assert acc == pytest.approx(
        {
            "retain_acc": 100.0,
            "forget_acc": 50.0,
            "unlearn_acc": 50.0,
            "test_acc": 100.0,
            "test_forget_acc": 50.0,
        }
    )


def test_predict_split_uses_the_evaluation_loaders_of_a_classwise_split():
    bundle = fl.load_dataset("digits")
    split = fl.classwise_split(bundle.train_y, 3, test_labels=bundle.test_y)
    loaders = fl.split_loaders(bundle, split, 256)
    model, params, buffers = fl.functional(
        fl.create_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
    )
    preds = fl.predict_split(model, params, buffers, loaders)
    assert len(preds.retain) == split.retain.numel() and len(preds.forget) == split.forget.numel()
    assert (
        len(preds.test) == split.test_retain.numel() and len(preds.test_forget) == split.test_forget.numel()
    )
    assert bool((preds.forget.labels == 3).all()) and not bool((preds.test.labels == 3).any())
    with pytest.raises(ValueError, match="forget_eval"):
        fl.predict_split(model, params, buffers, {"retain_eval": loaders["retain_eval"]})

