"""Inverse curvature-vector products ``x = (A + lambda I)^{-1} b`` on parameter trees.

``A`` is given by a product function ``matvec(v) -> A v`` on trees shaped like ``params`` (e.g. a
closure over :func:`~funlearn.second_order.hvp.hvp`, :func:`ggn_vp` or
:func:`empirical_fisher_vp`); nothing is ever flattened except by :func:`dense_solve`.

- :func:`cg`: conjugate gradient for symmetric positive-definite ``A + lambda I``; the residual
  history ``||b - (A + lambda I) x_k||`` is returned.
- :func:`lissa`: the stochastic Neumann series of Agarwal et al. (2017) as used by Koh & Liang
  (2017): ``h_t = b + h_{t-1} - (A + lambda I) h_{t-1} / scale``, ``x = h_T / scale``, averaged over
  ``repeats``; converges when the eigenvalues of ``(A + lambda I) / scale`` lie in (0, 2).
- :func:`woodfisher`: the damped empirical Fisher ``F = lambda I + (1/N) sum_s g_s g_s^T`` inverted
  exactly, by Woodbury (an N x N solve) or by N Sherman-Morrison updates whose rank-one directions
  are ``F_{s-1}^{-1} g_s`` (Singh & Alistarh, 2020). :func:`legacy_woodfisher` reproduces
  torchunlearn's recursion, which only ever moves ``v`` along the first gradient (defect N7).
- :func:`hessian_matrix` and :func:`dense_solve`: the exact reference for small models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from funlearn import tree
from funlearn.model import Params
from funlearn.random import key as make_key
from funlearn.second_order.hvp import count_samples

__all__ = [
    "SolveResult",
    "cg",
    "lissa",
    "woodfisher",
    "legacy_woodfisher",
    "hessian_matrix",
    "dense_solve",
]

Tree = dict[str, Tensor]
MatVec = Callable[[Tree], Tree]


class SolveResult(NamedTuple):
    """``x`` solves ``(A + damping I) x = b``; ``residuals[k] = ||b - (A + damping I) x_k||``
    (``x_0`` first; for stochastic LiSSA products, the sampled residual); ``converged`` is whether
    the tolerance was met (CG) or the series stayed finite (LiSSA)."""

    x: Tree
    residuals: list[float]
    iterations: int
    converged: bool


def _damped(matvec: MatVec, damping: float) -> MatVec:
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    return matvec if damping == 0 else (lambda v: tree.axpy(damping, v, matvec(v)))


def cg(
    matvec: MatVec,
    b: Tree,
    *,
    damping: float = 0.0,
    tol: float = 1e-5,
    maxiter: int = 100,
    x0: Tree | None = None,
) -> SolveResult:
    """Conjugate gradient on ``(A + damping I) x = b`` until ``||r|| <= tol * ||b||``.

    Stops early, with ``converged=False``, if a search direction has non-positive curvature
    (``A + damping I`` is not positive definite: raise ``damping`` or use a Gauss-Newton product).
    One ``matvec`` per iteration.
    """
    if maxiter < 1 or tol <= 0:
        raise ValueError(f"maxiter must be >= 1 and tol > 0, got maxiter={maxiter}, tol={tol}")
    op = _damped(matvec, damping)
    x = tree.zeros_like(b) if x0 is None else tree.clone(x0)
    r = tree.clone(b) if x0 is None else tree.sub(b, op(x))
    p = tree.clone(r)
    rr = float(tree.vdot(r, r))
    target = tol * float(tree.global_norm(b))
    residuals = [rr**0.5]
    if residuals[0] <= target:
        return SolveResult(x, residuals, 0, True)
    for it in range(1, maxiter + 1):
        ap = op(p)
        curvature = float(tree.vdot(p, ap))
        if not curvature > 0:
            return SolveResult(x, residuals, it - 1, False)
        alpha = rr / curvature
        x = tree.axpy(alpha, p, x)
        r = tree.axpy(-alpha, ap, r)
        rr_new = float(tree.vdot(r, r))
        residuals.append(rr_new**0.5)
        if residuals[-1] <= target:
            return SolveResult(x, residuals, it, True)
        p = tree.axpy(rr_new / rr, p, r)
        rr = rr_new
    return SolveResult(x, residuals, maxiter, False)


def lissa(
    matvec: Callable[..., Tree],
    b: Tree,
    *,
    depth: int = 100,
    scale: float = 10.0,
    damping: float = 0.0,
    repeats: int = 1,
    seed: int = 0,
    stochastic: bool = False,
) -> SolveResult:
    """LiSSA estimate of ``(A + damping I)^{-1} b`` after ``depth`` steps, averaged over ``repeats``.

    With ``stochastic=True``, ``matvec(v, key)`` is called with ``key = funlearn.random.key(seed,
    repeat, step)`` so it can draw a minibatch (see
    :func:`~funlearn.second_order.hvp.sampled_hvp`); the estimate is then seeded and
    reproducible. ``residuals`` concatenates the repeats' histories (each step's residual is free:
    ``h_t - h_{t-1} = b - (A + damping I) h_{t-1} / scale``).
    """
    if depth < 1 or repeats < 1 or scale <= 0:
        raise ValueError(f"depth and repeats must be >= 1 and scale > 0, got {depth}, {repeats}, {scale}")
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    total = tree.zeros_like(b)
    residuals: list[float] = []
    finite = True
    for r in range(repeats):
        h = tree.clone(b)
        for t in range(depth):
            ah = matvec(h, make_key(seed, r, t)) if stochastic else matvec(h)
            step = tree.sub(b, tree.scale(tree.axpy(damping, h, ah), 1.0 / scale))  # residual at h / scale
            residuals.append(float(tree.global_norm(step)))
            h = tree.add(h, step)
        finite = finite and bool(tree.all_finite(h))
        total = tree.add(total, h)
    return SolveResult(tree.scale(total, 1.0 / (repeats * scale)), residuals, depth * repeats, finite)


def _rows(grads: Tree) -> Tensor:
    """(N, P) matrix of the flattened per-sample gradients."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], 1)


def _check_grads(grads: Tree, v: Tree) -> int:
    if list(grads) != list(v) or any(grads[k].shape[1:] != v[k].shape for k in v):
        raise ValueError("grads must be per-sample gradients {name: (N, *shape)} with v's keys and shapes")
    return next(iter(grads.values())).shape[0]


def woodfisher(
    grads: Tree,
    v: Tree,
    *,
    damping: float,
    method: Literal["woodbury", "sherman_morrison"] = "woodbury",
) -> Tree:
    """``F^{-1} v`` for ``F = damping I + (1/N) sum_s g_s g_s^T`` with ``grads = {name: (N, *shape)}``.

    Woodbury: ``F^{-1} v = (v - G^T (N damping I + G G^T)^{-1} G v) / damping`` with ``G`` (N, P);
    costs the N x N Gram matrix (``N^2 P``) and a Cholesky solve in float64. Sherman-Morrison:
    ``F_s^{-1} = F_{s-1}^{-1} - a_s a_s^T / (N + g_s^T a_s)``, ``a_s = F_{s-1}^{-1} g_s``, applying
    the stored ``a_s`` (also ``N^2 P``, sequential). Both are exact; memory is ``N x P``.
    """
    if damping <= 0:
        raise ValueError(f"damping must be > 0 (F = damping I + ...), got {damping}")
    if method not in ("woodbury", "sherman_morrison"):
        raise ValueError(f"method must be 'woodbury' or 'sherman_morrison', got {method!r}")
    n = _check_grads(grads, v)
    g = _rows(grads)
    vec, spec = tree.flatten(v)
    if method == "woodbury":
        gram = (g @ g.T).double()
        gram.diagonal().add_(n * damping)
        coef = torch.cholesky_solve((g @ vec).double()[:, None], torch.linalg.cholesky(gram))[:, 0]
        out = (vec - g.T @ coef.to(g.dtype)) / damping
        return spec.unflatten(out)
    a = torch.empty_like(g)  # a_s = F_{s-1}^{-1} g_s
    denom = torch.empty(n, dtype=g.dtype, device=g.device)
    for s in range(n):
        a_s = g[s] / damping - a[:s].T @ ((a[:s] @ g[s]) / denom[:s])
        a[s], denom[s] = a_s, n + g[s] @ a_s
    return spec.unflatten(vec / damping - a.T @ ((a @ vec) / denom))


def legacy_woodfisher(grads: Tree, v: Tree, n: int = 1000) -> Tree:
    """torchunlearn's ``Influence`` recursion (influence.py:113-137), for comparison only.

    ``k = v``; ``o = g_1``; for s >= 2: ``c = <o, g_s>``, ``k -= (<k, g_s> / (n + c)) o``,
    ``o *= n / (n + c)``. Since ``o`` is only rescaled, ``k - v`` lies along ``g_1``: this is not an
    inverse-Fisher product (methods.md 1.18, defect N7). torchunlearn runs it on ``n + 1 = 1001``
    single-sample gradients with ``n = 1000``.
    """
    _check_grads(grads, v)
    g = _rows(grads)
    k, spec = tree.flatten(v)
    o = g[0]
    for s in range(1, g.shape[0]):
        c = o @ g[s]
        k = k - ((k @ g[s]) / (n + c)) * o
        o = o * n / (n + c)
    return spec.unflatten(k)


def hessian_matrix(loss_fn: Callable[[Params, Any], Tensor], params: Params, data: Iterable[Any]) -> Tensor:
    """The dense Hessian ``(P, P)`` of the mean of ``loss_fn(params, batch)`` over ``data``, in the
    order of ``funlearn.tree.flatten(params)`` (``torch.func.hessian``, i.e. forward-over-reverse).
    ``P^2`` memory: for small models and tests."""
    vec, spec = tree.flatten(tree.detach(params))
    total, n = torch.zeros(vec.numel(), vec.numel(), dtype=vec.dtype, device=vec.device), 0
    for batch in data:
        nb = count_samples(batch)
        total += nb * torch.func.hessian(lambda w, batch=batch: loss_fn(spec.unflatten(w), batch))(vec)
        n += nb
    if n == 0:
        raise ValueError("data yielded no samples")
    return total / n


def dense_solve(matrix: Tensor, b: Tree, *, damping: float = 0.0) -> Tree:
    """``(matrix + damping I)^{-1} b`` by LU, with ``b`` flattened in its key order."""
    vec, spec = tree.flatten(b)
    if matrix.shape != (vec.numel(), vec.numel()):
        raise ValueError(f"matrix must be ({vec.numel()}, {vec.numel()}) for b, got {tuple(matrix.shape)}")
    eye = torch.eye(vec.numel(), dtype=matrix.dtype, device=matrix.device)
    return spec.unflatten(torch.linalg.solve(matrix + damping * eye, vec.to(matrix.dtype)))
