import copy
import math

import pytest
import torch
from torch import nn

import funlearn as fl
from conftest import make_cnn


def _batches(n=20):
    g = torch.Generator().manual_seed(3)
    return [(torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def _functional_trajectory(net, tx, batches):
    model, params, buffers = fl.functional(net)
    state = tx.init(params)

    def loss(p, b, x, y):
        logits, nb = model.apply(p, b, x, train=True)
        return nn.functional.cross_entropy(logits, y), nb

    grad_fn = torch.func.grad(loss, has_aux=True)
    for x, y in batches:
        grads, buffers = grad_fn(params, buffers, x, y)
        updates, state = tx.update(grads, state, params)
        params = fl.apply_updates(params, updates)
    return params


def _torch_trajectory(net, make_opt, batches, scheduler=None):
    net = copy.deepcopy(net)
    net.train()
    opt = make_opt(net.parameters())
    sched = scheduler(opt) if scheduler else None
    for x, y in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if sched:
            sched.step()
    return dict(net.named_parameters())


CASES = [
    ("sgd", lambda: fl.sgd(0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    ("sgd-momentum-wd", lambda: fl.sgd(0.05, 0.9, weight_decay=5e-4),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4)),
    ("sgd-nesterov", lambda: fl.sgd(0.05, 0.9, nesterov=True, weight_decay=1e-3),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("sgd-dampening", lambda: fl.sgd(0.05, 0.9, dampening=0.3),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3)),
    ("adam", lambda: fl.adam(1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
    ("adam-l2", lambda: fl.adam(2e-3, 0.8, 0.99, weight_decay=1e-2),
     lambda p: torch.optim.Adam(p, lr=2e-3, betas=(0.8, 0.99), weight_decay=1e-2)),
    ("adam-amsgrad", lambda: fl.adam(1e-3, amsgrad=True), lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True)),
    ("adamw", lambda: fl.adamw(1e-3, weight_decay=5e-2), lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=5e-2)),
]


@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_optimizers_reproduce_torch_optim_trajectories(name, ours, theirs):
    net, batches = make_cnn(), _batches()
    got = _functional_trajectory(net, ours(), batches)
    want = _torch_trajectory(net, theirs, batches)
    for k, v in want.items():
        assert (got[k] - v.detach()).abs().max() <= 1e-6, k


def test_scheduled_sgd_reproduces_multistep_lr():
    net, batches = make_cnn(), _batches()
    got = _functional_trajectory(net, fl.sgd(fl.multistep_schedule(0.05, [5, 12], 0.1), 0.9), batches)
    want = _torch_trajectory(
        net, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), batches,
        scheduler=lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 12], 0.1),
    )
    for k, v in want.items():
        assert (got[k] - v.detach()).abs().max() <= 1e-6, k


def test_clip_by_global_norm_matches_torch():
    g = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([12.0])}
    tx = fl.clip_by_global_norm(1.0)
    out, _ = tx.update(g, tx.init(g))
    ref = [g["a"].clone().requires_grad_(), g["b"].clone().requires_grad_()]
    ref[0].grad, ref[1].grad = g["a"].clone(), g["b"].clone()
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    assert torch.allclose(out["a"], ref[0].grad) and torch.allclose(out["b"], ref[1].grad)
    small, _ = tx.update({"a": torch.tensor([0.1])}, ())
    assert torch.equal(small["a"], torch.tensor([0.1]))


def test_masked_applies_inner_per_leaf_only():
    params = {"w": torch.ones(2), "b": torch.ones(2)}
    grads = {"w": torch.full((2,), 2.0), "b": torch.full((2,), 2.0)}
    tx = fl.masked(fl.sgd(0.5, 0.9), {"w": True, "b": False})
    state = tx.init(params)
    assert set(state[1].trace) == {"w"}  # inner state only for selected leaves
    out, _ = tx.update(grads, state, params)
    assert torch.equal(out["w"], torch.full((2,), -1.0)) and torch.equal(out["b"], grads["b"])
    with pytest.raises(ValueError, match="no entry for params"):
        fl.masked(fl.scale(1.0), {"w": True}).init(params)


def test_add_decayed_weights_mask_skips_leaves():
    params = {"w": torch.full((2,), 2.0), "b": torch.full((2,), 2.0)}
    zeros = {k: torch.zeros(2) for k in params}
    tx = fl.add_decayed_weights(0.1, mask=lambda p: {k: v.ndim > 0 and k == "w" for k, v in p.items()})
    out, _ = tx.update(zeros, tx.init(params), params)
    assert torch.allclose(out["w"], torch.full((2,), 0.2)) and torch.equal(out["b"], zeros["b"])


def test_element_mask_last_keeps_masked_weights_bit_identical():
    net = make_cnn()
    model, params, buffers = fl.functional(net)
    g = torch.Generator().manual_seed(0)
    mask = {k: torch.rand(v.shape, generator=g) < 0.5 for k, v in params.items()}
    tx = fl.chain(fl.sgd(0.1, 0.9, weight_decay=5e-2), fl.mask_updates(mask))
    state = tx.init(params)
    start = fl.tree.clone(params)
    for x, y in _batches(10):
        grads = torch.func.grad(lambda p: nn.functional.cross_entropy(model.apply(p, buffers, x)[0], y))(params)
        updates, state = tx.update(grads, state, params)
        params = fl.apply_updates(params, updates)
    for k in params:
        frozen = ~mask[k]
        assert torch.equal(params[k][frozen], start[k][frozen]), k
        assert not torch.equal(params[k][mask[k]], start[k][mask[k]]), k
    nan_updates, _ = fl.mask_updates(mask).update({k: torch.full_like(v, math.nan) for k, v in params.items()}, ())
    assert all(torch.equal(nan_updates[k][~mask[k]], torch.zeros_like(nan_updates[k][~mask[k]])) for k in mask)


def test_skip_not_finite_zeroes_updates_and_keeps_state():
    params = {"w": torch.ones(3)}
    tx = fl.skip_not_finite(fl.sgd(0.1, 0.9))
    state = tx.init(params)
    out, state = tx.update({"w": torch.ones(3)}, state, params)
    momentum = state.inner[1].trace["w"].clone()
    out, state2 = tx.update({"w": torch.tensor([1.0, math.nan, 1.0])}, state, params)
    assert torch.equal(out["w"], torch.zeros(3))
    assert torch.equal(state2.inner[1].trace["w"], momentum)
    assert int(state2.skipped) == 1 and not bool(state2.last_finite)
    out, state3 = tx.update({"w": torch.ones(3)}, state2, params)
    assert torch.allclose(out["w"], -0.1 * (0.9 * momentum + 1)) and bool(state3.last_finite)


def test_chain_rejects_non_transformations():
    with pytest.raises(TypeError, match="not a GradientTransformation"):
        fl.chain(fl.scale(1.0), torch.optim.SGD)


def test_extra_arguments_reach_every_transformation():
    seen = []

    def init(params):
        return ()

    def update(updates, state, params=None, **extra):
        seen.append(extra.get("grad_fn"))
        return updates, state

    probe = fl.GradientTransformation(init, update)
    tx = fl.chain(fl.scale(1.0), probe, fl.sgd(0.1), probe)
    p = {"w": torch.ones(1)}
    tx.update(p, tx.init(p), p, grad_fn="marker")
    assert seen == ["marker", "marker"]
