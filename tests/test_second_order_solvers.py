"""Inverse solvers (CG, LiSSA, WoodFisher) against dense linear algebra on a small model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from funlearn import functional, tree
from funlearn.random import key
from funlearn.second_order import (
    batch_loss,
    cg,
    dense_solve,
    ggn_vp,
    hessian_matrix,
    hvp,
    legacy_woodfisher,
    lissa,
    per_sample_grads,
    sample_loss,
    sampled_hvp,
    woodfisher,
)


@pytest.fixture(scope="module")
def small():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    model, params, buffers = functional(net)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)
    b = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
    return net, model, params, buffers, x, y, b


def rel_err(a: dict, b: dict) -> float:
    return float(tree.global_norm(tree.sub(a, b)) / tree.global_norm(b))


def explicit_hessian(net, x, y):
    params = list(net.parameters())
    shapes = [p.shape for p in params]

    def loss(vec):
        pieces, start = [], 0
        for s in shapes:
            pieces.append(vec[start : start + s.numel()].reshape(s))
            start += s.numel()
        return F.cross_entropy(torch.func.functional_call(net, dict(zip([k for k, _ in net.named_parameters()], pieces)), (x,)), y)

    return torch.autograd.functional.hessian(loss, torch.cat([p.detach().reshape(-1) for p in params]))


def test_hessian_matrix_equals_autograd_hessian(small):
    net, model, params, buffers, x, y, _ = small
    h = hessian_matrix(batch_loss(model, buffers), params, [(x[:15], y[:15]), (x[15:], y[15:])])
    assert torch.allclose(h, explicit_hessian(net, x, y), rtol=0, atol=1e-12)


def test_cg_equals_a_dense_solve_and_reports_its_residuals(small):
    net, model, params, buffers, x, y, b = small
    data = [(x, y)]
    h = explicit_hessian(net, x, y)
    damping = max(0.0, -float(torch.linalg.eigvalsh(h).min())) + 1e-2  # H is indefinite at random init
    dense = dense_solve(h, b, damping=damping)
    result = cg(lambda v: hvp(batch_loss(model, buffers), params, v, data), b, damping=damping, tol=1e-10, maxiter=500)
    assert result.converged and rel_err(result.x, dense) <= 1e-4
    assert result.residuals[-1] <= 1e-10 * float(tree.global_norm(b)) and len(result.residuals) == result.iterations + 1
    # GGN is PSD: CG on it with damping matches the dense GGN solve too
    vec, spec = tree.flatten(params)
    cols = torch.stack([tree.flatten(ggn_vp(model, params, buffers, spec.unflatten(e), data))[0]
                        for e in torch.eye(vec.numel(), dtype=vec.dtype)], 1)  # fmt: skip
    ggn = cg(lambda v: ggn_vp(model, params, buffers, v, data), b, damping=damping, tol=1e-10, maxiter=500)
    assert rel_err(ggn.x, dense_solve(cols, b, damping=damping)) <= 1e-4


def test_cg_stops_on_negative_curvature():
    minus_identity = lambda v: tree.scale(v, -1.0)
    b = {"w": torch.ones(3, dtype=torch.float64)}
    result = cg(minus_identity, b)
    assert not result.converged and result.iterations == 0 and torch.equal(result.x["w"], torch.zeros(3, dtype=torch.float64))


def test_lissa_converges_to_the_dense_solution_and_is_seeded(small):
    net, model, params, buffers, x, y, b = small
    h = explicit_hessian(net, x, y)
    eig = torch.linalg.eigvalsh(h)
    damping = max(0.0, -float(eig.min())) + 0.05
    scale = float(eig.max()) + damping + 0.1  # eigenvalues of (H + damping) / scale in (0, 1)
    loss_fn = batch_loss(model, buffers)
    result = lissa(lambda v: hvp(loss_fn, params, v, [(x, y)]), b, depth=600, scale=scale, damping=damping)
    assert result.converged and rel_err(result.x, dense_solve(h, b, damping=damping)) <= 1e-4
    assert result.residuals[-1] < 1e-3 * result.residuals[0]
    matvec = sampled_hvp(loss_fn, params, (x, y), 10)
    a = lissa(matvec, b, depth=20, scale=scale, damping=damping, repeats=2, seed=3, stochastic=True)
    a2 = lissa(matvec, b, depth=20, scale=scale, damping=damping, repeats=2, seed=3, stochastic=True)
    c = lissa(matvec, b, depth=20, scale=scale, damping=damping, repeats=2, seed=4, stochastic=True)
    assert rel_err(a.x, a2.x) == 0 and rel_err(a.x, c.x) > 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_woodfisher_equals_the_dense_damped_empirical_fisher_solve(small, dtype):
    net, model, params, buffers, x, y, b = small
    net = net.to(dtype)
    model, params, buffers = functional(net)
    b = {k: v.to(dtype) for k, v in b.items()}
    grads = per_sample_grads(sample_loss(model, buffers), params, (x.to(dtype), y))
    rows = torch.cat([g.reshape(len(x), -1) for g in grads.values()], 1).double()
    damping = 1e-3
    fisher = damping * torch.eye(rows.shape[1], dtype=torch.float64) + rows.T @ rows / len(x)
    vec, spec = tree.flatten(b)
    ref = spec.unflatten(torch.linalg.solve(fisher, vec.double()).to(dtype))
    for method in ("woodbury", "sherman_morrison"):
        assert rel_err(woodfisher(grads, b, damping=damping, method=method), ref) <= 1e-4, method


def test_legacy_woodfisher_only_moves_along_the_first_gradient(small):
    _, model, params, buffers, x, y, b = small
    grads = per_sample_grads(sample_loss(model, buffers), params, (x, y))
    out = legacy_woodfisher(grads, b, n=len(x) - 1)
    delta = tree.flatten(tree.sub(out, b))[0]
    g1 = torch.cat([g[0].reshape(-1) for g in grads.values()])
    assert float(torch.abs(F.cosine_similarity(delta, g1, dim=0))) > 1 - 1e-9  # defect N7
    correct = woodfisher(grads, b, damping=1.0 / (len(x) - 1))
    assert rel_err(out, correct) > 0.5


def test_bad_solver_arguments_are_rejected(small):
    b = small[-1]
    identity = lambda v: v
    with pytest.raises(ValueError, match="damping"):
        cg(identity, b, damping=-1.0)
    with pytest.raises(ValueError, match="maxiter"):
        cg(identity, b, maxiter=0)
    with pytest.raises(ValueError, match="scale"):
        lissa(identity, b, scale=0.0)
    grads = {k: v[None].expand(3, *v.shape) for k, v in b.items()}
    with pytest.raises(ValueError, match="damping must be > 0"):
        woodfisher(grads, b, damping=0.0)
    with pytest.raises(ValueError, match="method"):
        woodfisher(grads, b, damping=1.0, method="cg")
    with pytest.raises(ValueError, match="matrix must be"):
        dense_solve(torch.eye(3), b)
    assert rel_err(woodfisher(grads, b, damping=1.0, method="woodbury"), woodfisher(grads, b, damping=1.0, method="sherman_morrison")) < 1e-12
    _ = key  # seeded draws come from funlearn.random.key in lissa
