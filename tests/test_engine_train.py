"""Plain supervised training on the engine reaches a clear accuracy on real data within seconds."""

from __future__ import annotations

import time

import pytest
import torch

import funlearn as fl


def test_train_small_cnn_on_digits_reaches_95_percent_test_accuracy():
    digits = fl.load_dataset("digits")
    net = fl.create_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)
    model, params, buffers = fl.functional(net, mean=digits.mean, std=digits.std)
    loader = fl.TensorLoader(digits.train_x, digits.train_y, 64, seed=0)
    test = fl.TensorLoader(digits.test_x, digits.test_y, 512, shuffle=False)
    start = time.perf_counter()
    result = fl.train(model, params, buffers, loader, epochs=5, optimizer=fl.adam(3e-3), eval_loaders={"test": test},
                      best={"acc/test": "max"}, progress=False)
    seconds = time.perf_counter() - start
    accs = result.history.column("acc/test")
    assert accs[-1] >= 95.0, accs
    assert accs[0] < accs[-1]
    assert result.best_record["acc/test"] == max(accs)
    assert seconds < 30
    # the trained params give that accuracy in an ordinary nn.Module too
    net = fl.load_into_module(net, result.params, result.buffers).eval()
    with torch.no_grad():
        logits = net((digits.test_x - digits.mean[0]) / digits.std[0])
    assert 100 * (logits.argmax(1) == digits.test_y).float().mean().item() == pytest.approx(accs[-1])


def test_train_rejects_split_batches_with_a_hint():
    model, params, buffers = fl.functional(torch.nn.Linear(2, 2))
    batch = {"forget": (torch.ones(1, 2), torch.tensor([0])), "retain": (torch.ones(1, 2), torch.tensor([1]))}
    with pytest.raises(ValueError, match=r"loaders\['retain'\]"):
        fl.train(model, params, buffers, [batch], steps=1, progress=False)
    with pytest.raises(ValueError, match="label_smoothing"):
        fl.train(model, params, buffers, [batch], steps=1, label_smoothing=1.0)
