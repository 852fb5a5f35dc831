"""End to end on Fashion-MNIST: forgetting one class with NegGrad+, RandomLabel, SalUn and UAM.

A small CNN is trained once per test module on a 6000-image subset (SGD, cosine schedule) and kept
in memory for every method. Each method then runs 100 engine steps of 64 forget + 64 retain images
with a cosine learning-rate schedule, and must bring the accuracy on the forgotten class's training
images below 5% while the accuracy on the retained training images stays within 5 points of the
original model's. Settings: the presets' defaults with a cosine learning rate (0.01; 0.005 for the
random-label methods), and for RandomLabel and SalUn random labels among the wrong classes only
(with the true class among the draws the forgotten class stays the argmax of a near-uniform output
on up to a third of its images) with forget weight 0.3.
"""

from __future__ import annotations

import pytest
import torch

import funlearn as fl

pytestmark = pytest.mark.slow

FORGET_CLASS, SUBSET, STEPS, BATCH = 1, 6000, 100, 64


@pytest.fixture(scope="module")
def original():
    try:
        bundle = fl.load_dataset("fashion_mnist")
    except FileNotFoundError as err:  # the IDX files are part of the environment; say so if missing
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    rows = torch.randperm(bundle.train_y.numel(), generator=fl.random.key(0))[:SUBSET]
    x, y = bundle.train_x[rows], bundle.train_y[rows]
    net = fl.create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, seed=0)
    model, params, buffers = fl.functional(net, mean=bundle.mean, std=bundle.std)
    epochs, loader = 8, fl.TensorLoader(x, y, 128, seed=0)
    optimizer = fl.sgd(fl.cosine_schedule(0.05, epochs * len(loader)), 0.9, weight_decay=5e-4)
    trained = fl.train(model, params, buffers, loader, epochs=epochs, optimizer=optimizer, progress=False)
    split = fl.classwise_split(y, FORGET_CLASS)
    return model, trained.params, trained.buffers, x, y, split


def _accuracy(model, params, buffers, x, y, rows):
    with torch.no_grad():
        return 100.0 * float(fl.accuracy(model.logits(params, buffers, fl.to_float(x[rows])), y[rows]))


def _cosine_sgd(lr):
    return fl.sgd(fl.cosine_schedule(lr, STEPS), 0.9, weight_decay=5e-4)


METHODS = {
    "neggrad_plus": lambda model, params, buffers, forget: fl.neggrad_plus(model, _cosine_sgd(0.01)),
    "random_label": lambda model, params, buffers, forget: fl.random_label(
        model, 10, _cosine_sgd(0.005), exclude_true=True, forget_weight=0.3
    ),
    "salun": lambda model, params, buffers, forget: fl.salun(
        model, params, buffers, forget, 10, _cosine_sgd(0.005), exclude_true=True, forget_weight=0.3
    ),
    "uam": lambda model, params, buffers, forget: fl.uam(model, _cosine_sgd(0.01), rho=0.3, total_steps=STEPS),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_classwise_forgetting_on_fashion_mnist(original, name):
    model, params, buffers, x, y, split = original
    forget_eval = fl.TensorLoader(x, y, 256, shuffle=False, indices=split.forget)
    method = METHODS[name](model, params, buffers, forget_eval)
    batches = fl.merged_batches(
        fl.TensorLoader(x, y, BATCH, seed=1, indices=split.forget),
        fl.TensorLoader(x, y, BATCH, seed=2, indices=split.retain),
        epoch_length=STEPS,
    )
    result = fl.run(method, params, buffers, batches, epochs=1, seed=0, progress=False)
    assert result.completed
    before = [_accuracy(model, params, buffers, x, y, rows) for rows in (split.retain, split.forget)]
    after = [_accuracy(model, result.params, result.buffers, x, y, rows) for rows in (split.retain, split.forget)]
    print(f"{name}: retain {before[0]:.2f} -> {after[0]:.2f}, forget {before[1]:.2f} -> {after[1]:.2f}")
    assert before[1] > 90.0  # the original model knows the class
    assert after[1] < 5.0
    assert after[0] > before[0] - 5.0
