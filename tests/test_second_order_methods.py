"""The closed-form presets: Fisher forgetting and influence (Newton) removal, and alpha selection."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from funlearn import classwise_split, functional, load_dataset, random_split, tree
from funlearn.methods.fisher_forget import fisher_forget, fisher_noise, output_layer
from funlearn.methods.influence import influence
from funlearn.random import key
from funlearn.second_order import (
    ClasswiseRule,
    RandomForgettingRule,
    batch_loss,
    data_grad,
)

WEIGHT_DECAY = 1e-3


@pytest.fixture(scope="module")
def trained():
    """An MLP trained on sklearn digits (full-batch Adam, 300 steps, weight decay in the loss)."""
    bundle = load_dataset("digits")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    model, params, buffers = functional(net, mean=bundle.mean, std=bundle.std)
    loss_fn = batch_loss(model, buffers, l2=WEIGHT_DECAY)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.Adam(list(leaves.values()), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        loss_fn(leaves, (bundle.train_x, bundle.train_y)).backward()
        opt.step()
    return bundle, model, tree.detach(leaves), buffers


def eval_sets(bundle, split):
    x, y = bundle.train_x, bundle.train_y
    return {"retain": [(x[split.retain], y[split.retain])], "forget": [(x[split.forget], y[split.forget])],
            "test": [(bundle.test_x, bundle.test_y)]}  # fmt: skip


def test_output_layer_is_the_linear_producing_the_logits_not_any_width_c_tensor(trained):
    bundle, model, params, buffers = trained
    assert output_layer(model, params, buffers, bundle.train_x[:2]) == "3"
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10))  # hidden width == C (N2)
    m, p, b = functional(net)
    assert output_layer(m, p, b, bundle.train_x[:2]) == "3"
    m, p, b = functional(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Tanh()))
    with pytest.raises(ValueError, match="pass head="):
        output_layer(m, p, b, bundle.train_x[:2])


def test_fisher_noise_follows_the_paper_step_by_step():
    alpha, eps = 1e-3, 1e-8
    params = {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3), "head.weight": torch.randn(3, 4), "head.bias": torch.randn(3)}
    fisher = {k: torch.rand(v.shape) * torch.logspace(-6, 2, v.numel()).reshape(v.shape) for k, v in params.items()}
    mean, var = fisher_noise(params, fisher, alpha, head="head", forget_classes=[1], eps=eps)
    for k, p in params.items():  # written out independently, element by element
        is_head = k.startswith("head")
        raw = [[min(1 / (float(f) + eps), 1e3) for f in row] for row in fisher[k].reshape(p.shape[0], -1)]
        if is_head:
            raw = [[min(v, 1e2) for v in row] for row in raw]
        expected = torch.tensor([[alpha * sum(row) / len(row)] * len(row) if p.ndim > 1 else [alpha * row[0]] for row in raw])
        expected = expected.reshape(p.shape).clone()
        mu = p.clone()
        if is_head:
            mu[1], expected[1] = 0.0, 1e-4
        if is_head or p.ndim == 1:
            expected *= 10
        assert torch.allclose(var[k], expected, rtol=1e-5), k
        assert torch.equal(mean[k], mu), k
    # "a.weight" has shape[0] == C but is not the output layer: no head clamp, no x10 (N2)
    sample, _ = fisher_noise(params, fisher, alpha, head="head", forget_classes=[1], generator=key(0))
    again, _ = fisher_noise(params, fisher, alpha, head="head", forget_classes=[1], generator=key(0))
    assert all(torch.equal(sample[k], again[k]) for k in params)


def test_fisher_forget_classwise_is_seeded_and_resets_the_forgotten_row(trained):
    bundle, model, params, buffers = trained
    split = classwise_split(bundle.train_y, 3)
    retain = [(bundle.train_x[split.retain], bundle.train_y[split.retain])]
    kwargs = {"eval_data": eval_sets(bundle, split), "alphas": (1e-8, 1e-6), "repeats": 2, "seed": 4,
              "forget_classes": [3], "progress": False}  # fmt: skip
    result = fisher_forget(model, params, buffers, retain, **kwargs)
    again = fisher_forget(model, params, buffers, retain, fisher=result.info["fisher"], **kwargs)
    assert all(torch.equal(result.params[k], again.params[k]) for k in params)
    assert [(r["alpha"], r["repeat"]) for r in result.table] == [(1e-8, 0), (1e-8, 1), (1e-6, 0), (1e-6, 1)]
    scores = [r["score"] for r in result.table]
    assert result.best == scores.index(max(scores))
    row = result.params["3.weight"][3]  # mean 0, variance 1e-4 * 10 whatever alpha (the paper, N3)
    assert 0.015 < float(row.std()) < 0.05 and abs(float(row.mean())) < 0.02
    assert result.original["forget"] > 0.9 and result.table[result.best]["forget"] < 0.2
    assert result.table[result.best]["retain"] > result.original["retain"] - 0.02
    assert "<- chosen" in str(result) and "original" in str(result)


def test_random_forgetting_rule_targets_heldout_accuracy_not_zero():
    rule = RandomForgettingRule(tolerance=0.02)
    original = {"retain": 0.99, "forget": 0.99, "test": 0.93}
    near_test = {"retain": 0.985, "forget": 0.94, "test": 0.93}
    destroyed = {"retain": 0.98, "forget": 0.0, "test": 0.92}
    broken_retain = {"retain": 0.80, "forget": 0.93, "test": 0.80}
    assert rule(near_test, original) > rule(destroyed, original)
    assert rule(near_test, original) == pytest.approx(-0.01)
    assert rule(broken_retain, original) == pytest.approx(-0.13 - 10 * (0.19 - 0.02))
    assert ClasswiseRule()(destroyed, original) > ClasswiseRule()(near_test, original)


def test_influence_takes_a_real_newton_step_and_selects_on_heldout_data(trained):
    bundle, model, params, buffers = trained
    split = random_split(bundle.train_y, 0.1, seed=0)
    retain = [(bundle.train_x[split.retain], bundle.train_y[split.retain])]
    evals = eval_sets(bundle, split)
    with pytest.raises(ValueError, match="eval_data\\['test'\\]"):
        influence(model, params, buffers, retain, eval_data={k: evals[k] for k in ("retain", "forget")})
    result = influence(model, params, buffers, retain, eval_data=evals, l2=WEIGHT_DECAY, damping=1e-3,
                       maxiter=200, tol=1e-6, progress=False)  # fmt: skip
    assert result.info["converged"] and result.info["residuals"][-1] < 1e-6 * result.info["residuals"][0]
    rule = RandomForgettingRule()
    assert [r["alpha"] for r in result.table] == [0.25, 0.5, 1.0, 2.0]
    assert result.table[result.best]["score"] == max(rule(r, result.original) for r in result.table)
    # the damped Gauss-Newton direction descends the retain objective, and the full step lowers it
    loss_fn = batch_loss(model, buffers, l2=WEIGHT_DECAY)
    assert float(tree.vdot(data_grad(loss_fn, params, retain), result.info["direction"])) > 0
    newton = tree.axpy(-1.0, result.info["direction"], params)
    assert float(loss_fn(newton, retain[0])) < float(loss_fn(params, retain[0])) - 5e-4
    # a user rule replaces the default
    largest = influence(model, params, buffers, retain, eval_data=evals, l2=WEIGHT_DECAY, damping=1e-3,
                        selection=lambda m, o: 0.0 if m is None else -abs(m["forget"] - 2.0), progress=False)  # fmt: skip
    assert largest.table[largest.best]["forget"] == max(r["forget"] for r in largest.table)
    _ = F  # losses come from funlearn.losses through batch_loss
