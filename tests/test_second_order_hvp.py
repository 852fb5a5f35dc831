"""Hessian, Gauss-Newton and empirical-Fisher vector products against explicit computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from funlearn import functional, tree
from funlearn.random import key
from funlearn.second_order import (
    batch_loss,
    data_grad,
    empirical_fisher_vp,
    ggn_vp,
    hvp,
    sampled_hvp,
)


def smooth_net() -> nn.Module:
    """Twice-differentiable everywhere (finite differences of gradients are meaningful)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.AvgPool2d(4),
            nn.Flatten(), nn.Linear(4 * 7 * 7, 12), nn.GELU(), nn.Linear(12, 5),
        ).double()  # fmt: skip
        net.train()
        with torch.no_grad():
            net(torch.randn(32, 1, 28, 28, dtype=torch.float64) * 2 + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def setup():
    net = smooth_net()
    model, params, buffers = functional(net)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(10, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 5, (10,), generator=g)
    v = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
    return net, model, params, buffers, x, y, v


def rel_err(a: dict, b: dict) -> float:
    return float(tree.global_norm(tree.sub(a, b)) / tree.global_norm(b))


def module_grad(net: nn.Module, x, y, create_graph=False):
    loss = F.cross_entropy(net(x), y)
    return torch.autograd.grad(loss, list(net.parameters()), create_graph=create_graph)


def test_hvp_equals_double_backward_and_a_central_difference(setup):
    net, model, params, buffers, x, y, v = setup
    names = [k for k, _ in net.named_parameters()]
    grads = module_grad(net, x, y, create_graph=True)
    ref = dict(zip(names, torch.autograd.grad(grads, list(net.parameters()), [v[k] for k in names])))
    loss_fn = batch_loss(model, buffers)
    data = [(x[:3], y[:3]), (x[3:], y[3:])]  # uneven batches, weighted by size
    for strategy in ("fwd_rev", "rev_rev", "auto"):
        assert rel_err(hvp(loss_fn, params, v, data, strategy=strategy), ref) <= 1e-12, strategy
    eps = 1e-5
    shifted = lambda s: {k: p + s * eps * v[k] for k, p in params.items()}
    fd = tree.scale(tree.sub(data_grad(loss_fn, shifted(1), [(x, y)]), data_grad(loss_fn, shifted(-1), [(x, y)])), 0.5 / eps)
    assert rel_err(fd, ref) <= 1e-7


def test_hvp_falls_back_to_reverse_over_reverse_without_a_forward_rule(setup):
    _, model, params, buffers, x, y, v = setup

    class Square(torch.autograd.Function):  # backward only: no forward-mode rule
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return t * t

        @staticmethod
        def backward(ctx, grad):
            (t,) = ctx.saved_tensors
            return 2 * t * grad

    def loss_fn(p, batch):
        return Square.apply(model.logits(p, buffers, batch[0])).mean()

    ref = hvp(lambda p, b: model.logits(p, buffers, b[0]).square().mean(), params, v, [(x, y)], strategy="rev_rev")
    with pytest.raises(RuntimeError):
        hvp(loss_fn, params, v, [(x, y)], strategy="fwd_rev")
    assert rel_err(hvp(loss_fn, params, v, [(x, y)]), ref) <= 1e-12


def jacobian_rows(model, params, buffers, x):
    vec, spec = tree.flatten(params)
    jac = torch.autograd.functional.jacobian(lambda w: model.logits(spec.unflatten(w), buffers, x), vec)
    return jac, vec, spec  # (B, C, P)


def test_gauss_newton_product_equals_explicit_jt_h_j(setup):
    _, model, params, buffers, x, y, v = setup
    jac, _, spec = jacobian_rows(model, params, buffers, x)
    vv = tree.flatten(v)[0]
    p = torch.softmax(model.logits(params, buffers, x), -1)
    h_out = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # Hessian of CE in the logits
    ref = spec.unflatten(torch.einsum("bcp,bcd,bdq,q->p", jac, h_out, jac, vv) / len(x))
    data = [(x[:4], y[:4]), (x[4:], y[4:])]
    assert rel_err(ggn_vp(model, params, buffers, v, data), ref) <= 1e-12
    # any per-sample loss: squared error has H_out = 2 I
    def sq(z, t):
        return (z - F.one_hot(t, 5).to(z.dtype)).square().sum(-1)

    ref_sq = spec.unflatten(2 * torch.einsum("bcp,bcq,q->p", jac, jac, vv) / len(x))
    assert rel_err(ggn_vp(model, params, buffers, v, data, loss=sq), ref_sq) <= 1e-12


def test_empirical_fisher_product_equals_per_sample_outer_products(setup):
    net, model, params, buffers, x, y, v = setup
    rows = torch.stack([torch.cat([g.reshape(-1) for g in module_grad(net, x[i : i + 1], y[i : i + 1])])
                        for i in range(len(x))])  # fmt: skip
    vec, spec = tree.flatten(v)
    ref = spec.unflatten(rows.T @ (rows @ vec) / len(x))  # (1/n) sum_i g_i g_i^T v
    assert rel_err(empirical_fisher_vp(model, params, buffers, v, [(x[:7], y[:7]), (x[7:], y[7:])]), ref) <= 1e-12


def test_sampled_hvp_is_the_hvp_of_the_drawn_minibatch(setup):
    _, model, params, buffers, x, y, v = setup
    loss_fn = batch_loss(model, buffers, l2=0.1)
    matvec = sampled_hvp(loss_fn, params, (x, y), 4)
    idx = torch.randint(10, (4,), generator=key(3))
    ref = hvp(loss_fn, params, v, [(x[idx], y[idx])])
    assert rel_err(matvec(v, key(3)), ref) <= 1e-13
    assert rel_err(matvec(v, key(4)), ref) > 1e-3
    # the l2 term adds l2 * v
    plain = hvp(batch_loss(model, buffers), params, v, [(x[idx], y[idx])])
    assert rel_err(ref, tree.axpy(0.1, v, plain)) <= 1e-12


def test_bad_directions_and_empty_data_are_rejected(setup):
    _, model, params, buffers, x, y, v = setup
    loss_fn = batch_loss(model, buffers)
    with pytest.raises(ValueError, match="keys .in order. and shapes"):
        hvp(loss_fn, params, {k: v[k] for k in reversed(list(v))}, [(x, y)])
    with pytest.raises(ValueError, match="strategy"):
        hvp(loss_fn, params, v, [(x, y)], strategy="forward")
    with pytest.raises(ValueError, match="no samples"):
        ggn_vp(model, params, buffers, v, [])
    with pytest.raises(ValueError, match="l2"):
        batch_loss(model, buffers, l2=-1.0)
