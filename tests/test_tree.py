import math

import pytest
import torch

from funlearn import tree


def _trees():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)}
    b = {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)}
    return a, b


def test_arithmetic_matches_per_leaf_formulas():
    a, b = _trees()
    for k in a:
        assert torch.equal(tree.add(a, b)[k], a[k] + b[k])
        assert torch.equal(tree.sub(a, b)[k], a[k] - b[k])
        assert torch.allclose(tree.scale(a, 2.5)[k], 2.5 * a[k])
        assert torch.allclose(tree.scale(a, torch.tensor(-0.5))[k], -0.5 * a[k])
        assert torch.allclose(tree.axpy(3.0, a, b)[k], 3.0 * a[k] + b[k])
        assert torch.allclose(tree.axpy(torch.tensor(3.0), a, b)[k], 3.0 * a[k] + b[k])
        assert torch.equal(tree.map(torch.maximum, a, b)[k], torch.maximum(a[k], b[k]))


def test_reductions_match_flat_vectors():
    a, b = _trees()
    va = torch.cat([a["w"].reshape(-1), a["b"]])
    vb = torch.cat([b["w"].reshape(-1), b["b"]])
    assert torch.allclose(tree.vdot(a, b), va @ vb)
    assert torch.allclose(tree.global_norm(a), va.norm())
    assert tree.num_elements(a) == 16


def test_inputs_are_never_mutated():
    a, b = _trees()
    a0 = tree.clone(a)
    tree.add(a, b), tree.axpy(2.0, a, b), tree.scale(a, 3.0), tree.where(torch.tensor(False), a, b)
    assert all(torch.equal(a[k], a0[k]) for k in a)


def test_zeros_ones_where():
    a, b = _trees()
    assert all(torch.equal(v, torch.zeros_like(a[k])) for k, v in tree.zeros_like(a).items())
    assert all(torch.equal(v, torch.ones_like(a[k])) for k, v in tree.ones_like(a).items())
    picked = tree.where(torch.tensor(True), a, b)
    assert all(torch.equal(picked[k], a[k]) for k in a)
    cond = {k: v > 0 for k, v in a.items()}
    sel = tree.where(cond, a, b)
    for k in a:
        assert torch.equal(sel[k], torch.where(a[k] > 0, a[k], b[k]))


def test_all_finite_detects_nan_and_inf():
    a, _ = _trees()
    assert bool(tree.all_finite(a))
    bad = tree.clone(a)
    bad["b"][2] = math.nan
    assert not bool(tree.all_finite(bad))
    bad["b"][2] = math.inf
    assert not bool(tree.all_finite(bad))


def test_flatten_roundtrip_in_key_order_with_dtypes():
    t = {"z": torch.arange(6.0).reshape(2, 3), "a": torch.tensor([7.0, 8.0], dtype=torch.float64)}
    vec, spec = tree.flatten(t)
    assert vec.tolist() == [0, 1, 2, 3, 4, 5, 7, 8]  # dict order, not alphabetical
    back = spec.unflatten(vec)
    assert list(back) == ["z", "a"] and back["a"].dtype == torch.float64
    assert all(torch.equal(back[k], t[k]) for k in t)
    with pytest.raises(ValueError, match="8 elements"):
        spec.unflatten(torch.zeros(7))


def test_mismatched_keys_are_an_error():
    a, _ = _trees()
    with pytest.raises(ValueError, match="different keys"):
        tree.add(a, {"w": a["w"]})
