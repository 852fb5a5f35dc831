"""Newton removal against exact retraining: ridge regression (exact) and L2-logistic regression
(Guo et al. 2020: the gradient residual stays within the data-dependent bound)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from funlearn import functional, tree
from funlearn.second_order import batch_loss, newton_removal, newton_step


def linear_model(d: int, bias: bool):
    model, params, buffers = functional(nn.Linear(d, 1, bias=bias).double())
    return model, params, buffers


def test_ridge_newton_removal_equals_refitting_without_the_points():
    g = torch.Generator().manual_seed(0)
    n, d, lam = 120, 8, 0.3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, generator=g, dtype=torch.float64) + 0.5 + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)

    def fit(xs, ys):  # argmin mean(0.5 (w.x + b - y)^2) + lam/2 (|w|^2 + b^2), closed form
        a = torch.cat([xs, torch.ones(len(xs), 1, dtype=xs.dtype)], 1)
        theta = torch.linalg.solve(a.T @ a / len(xs) + lam * torch.eye(d + 1, dtype=xs.dtype), a.T @ ys / len(xs))
        return {"weight": theta[:d][None], "bias": theta[d:]}

    model, _, buffers = linear_model(d, bias=True)
    loss_fn = batch_loss(model, buffers, lambda z, t: 0.5 * (z[:, 0] - t).square(), l2=lam)
    trained = fit(x, y)
    forget = torch.arange(0, n, 7)
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget] = False
    retrained = fit(x[keep], y[keep])
    retain = [(x[keep][:50], y[keep][:50]), (x[keep][50:], y[keep][50:])]
    for options in ({"solver": "cg", "tol": 1e-14, "maxiter": 200}, {"solver": "dense"}):
        removed, _ = newton_removal(loss_fn, trained, retain, **options)
        err = float(tree.global_norm(tree.sub(removed, retrained)))
        assert err <= 1e-6 * float(tree.global_norm(retrained)), options
    assert float(tree.global_norm(tree.sub(trained, retrained))) > 1e-3  # the removal did move the model


def logistic_fit(x, y, lam, w0=None):
    """Newton's method to convergence on mean softplus(-y w.x) + lam/2 |w|^2 (float64)."""
    w = torch.zeros(x.shape[1], dtype=x.dtype) if w0 is None else w0.clone()
    for _ in range(50):
        s = torch.sigmoid(-y * (x @ w))
        grad = -(x * (y * s)[:, None]).mean(0) + lam * w
        hess = (x.T * (s * (1 - s))) @ x / len(x) + lam * torch.eye(x.shape[1], dtype=x.dtype)
        w = w - torch.linalg.solve(hess, grad)
        if float(grad.norm()) < 1e-15:
            break
    return w


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_logistic_newton_removal_is_within_guos_bound_and_close_to_retraining(curvature):
    g = torch.Generator().manual_seed(1)
    n, d, lam = 400, 20, 1e-2
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1.0)  # ||x_i|| <= 1, as the bound assumes
    w_true = 3 * torch.randn(d, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(x @ w_true), 1.0, -1.0).double()
    w_star = logistic_fit(x, y, lam)
    forget = torch.arange(0, n, 40)  # 10 points
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget] = False
    xr, yr = x[keep], y[keep]
    w_retrain = logistic_fit(xr, yr, lam, w_star)

    model, _, buffers = linear_model(d, bias=False)
    loss_fn = batch_loss(model, buffers, lambda z, t: F.softplus(-t * z[:, 0]), l2=lam)
    params = {"weight": w_star[None].clone()}
    removed, step = newton_removal(loss_fn, params, [(xr, yr)], curvature=curvature, tol=1e-13, maxiter=200)
    assert step.solve.converged
    w_minus = removed["weight"][0]
    # Guo et al. (2020), Cor. 1 with gamma = 1/4 for the sum-form objective
    # L(w; D') = sum_i l(w.x_i, y_i) + lam (n - m) / 2 |w|^2, whose Newton step is the same.
    s = torch.sigmoid(-yr * (xr @ w_minus))
    residual = float((-(xr * (yr * s)[:, None]).sum(0) + lam * len(xr) * w_minus).norm())
    delta = step.direction["weight"][0]
    bound = 0.25 * float(torch.linalg.matrix_norm(xr, ord=2)) * float(delta.norm()) * float((xr @ delta).norm())
    assert 0 < residual <= bound
    assert float((w_minus - w_retrain).norm()) <= 0.1 * float((w_star - w_retrain).norm())


def test_newton_step_rejects_bad_options():
    model, params, buffers = linear_model(3, bias=True)
    loss_fn = batch_loss(model, buffers, lambda z, t: z[:, 0].square())
    data = [(torch.randn(4, 3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))]
    with pytest.raises(ValueError, match="solver must be"):
        newton_step(loss_fn, params, data, solver="qr")
    with pytest.raises(ValueError, match="curvature must be"):
        newton_step(loss_fn, params, data, curvature="kfac")
    with pytest.raises(ValueError, match="needs loss_fn = batch_loss"):
        newton_step(lambda p, b: p["bias"].sum(), params, data, curvature="ggn")
    with pytest.raises(ValueError, match="use curvature='hessian'"):
        newton_step(loss_fn, params, data, curvature="ggn", solver="dense")


def test_woodfisher_curvature_inverts_the_damped_empirical_fisher_of_the_first_samples():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(90, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (90,), generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Linear(4, 3).double()
    model, params, buffers = functional(net)
    loss_fn = batch_loss(model, buffers, l2=0.01)
    data = [(x[:40], y[:40]), (x[40:], y[40:])]
    step = newton_step(loss_fn, params, data, curvature="woodfisher", damping=0.05, woodfisher_samples=50)
    rows = []
    for i in range(50):  # explicit per-sample gradients of the first 50 samples
        grads = torch.autograd.grad(F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]), list(net.parameters()))
        rows.append(torch.cat([t.reshape(-1) for t in grads]))
    rows = torch.stack(rows)
    fisher = 0.06 * torch.eye(rows.shape[1], dtype=torch.float64) + rows.T @ rows / 50
    vec, spec = tree.flatten(step.grad)
    expected = spec.unflatten(torch.linalg.solve(fisher, vec))
    assert float(tree.global_norm(tree.sub(step.direction, expected))) <= 1e-10 * float(tree.global_norm(expected))
