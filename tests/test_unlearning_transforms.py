"""The unlearning transformations against hand-written formulas and explicit torch.optim loops."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import funlearn as fl
from methods_common import max_abs_diff, split_batches, tiny_mlp


def _grads(model, params, buffers, batch, split="retain"):
    (_, _), grads = fl.value_and_grad(fl.cross_entropy_on(model, split), has_aux=True)(params, buffers, batch, None)
    return grads


# ----------------------------------------------------------------------------- L1 proximal


def test_l1_proximal_step_equals_soft_thresholding_formula():
    model, params, buffers = fl.functional(tiny_mlp(batch_norm=False))
    batch = split_batches(1)[0]
    lr, wd, l1 = 0.1, 1e-2, 0.5
    tx = fl.chain(fl.sgd(lr, 0.9, weight_decay=wd), fl.l1_proximal(l1, lr))
    grads = _grads(model, params, buffers, batch)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = fl.apply_updates(params, updates)
    for k, theta in params.items():
        v = theta - lr * (grads[k] + wd * theta)  # first SGD step: the momentum buffer is the gradient
        want = torch.sign(v) * torch.clamp(v.abs() - lr * l1, min=0.0)
        assert torch.allclose(new[k], want, atol=1e-7), k
    zeros = sum(int((v == 0).sum()) for v in new.values())
    assert zeros > 0  # the threshold is large enough to zero some weights exactly


def test_l1_proximal_schedule_matches_torch_sgd_then_prox_loop():
    net = tiny_mlp(batch_norm=False)
    model, params, buffers = fl.functional(net)
    batches = split_batches(8)
    lr, total = 0.05, 6
    schedule = fl.linear_schedule(0.3, 0.0, total)  # decays to zero after 6 steps: steps 6, 7 are plain SGD
    tx = fl.chain(fl.sgd(lr, 0.9, weight_decay=5e-4), fl.l1_proximal(schedule, lr))
    state = tx.init(params)
    for b in batches:
        updates, state = tx.update(_grads(model, params, buffers, b), state, params)
        params = fl.apply_updates(params, updates)

    ref = copy.deepcopy(net).train()
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for t, b in enumerate(batches):
        opt.zero_grad()
        F.cross_entropy(ref(b["retain"][0]), b["retain"][1]).backward()
        opt.step()
        tau = lr * 0.3 * max(0.0, 1 - t / total)
        with torch.no_grad():
            for p in ref.parameters():
                p.copy_(torch.sign(p) * torch.clamp(p.abs() - tau, min=0.0))
    assert max_abs_diff(params, dict(ref.named_parameters())) < 1e-6


def test_l1_subgradient_matches_torch_sgd_on_penalised_loss():
    net = tiny_mlp(batch_norm=False)
    model, params, buffers = fl.functional(net)
    batches = split_batches(5)
    total, gamma, lr = 4, 0.02, 0.05
    tx = fl.chain(fl.add_l1_subgradient(fl.linear_schedule(gamma, 0.0, total)), fl.sgd(lr, 0.9, weight_decay=5e-4))
    state = tx.init(params)
    for b in batches:
        updates, state = tx.update(_grads(model, params, buffers, b), state, params)
        params = fl.apply_updates(params, updates)

    ref = copy.deepcopy(net).train()
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for t, b in enumerate(batches):
        opt.zero_grad()
        coef = gamma * max(0.0, 1 - t / total)
        l1 = sum(p.abs().sum() for p in ref.parameters())
        (F.cross_entropy(ref(b["retain"][0]), b["retain"][1]) + coef * l1).backward()
        opt.step()
    assert max_abs_diff(params, dict(ref.named_parameters())) < 1e-6


def test_l1_transforms_need_params_and_respect_leaf_mask():
    params = {"w": torch.tensor([1.0, -0.05]), "b": torch.tensor([0.05])}
    tx = fl.l1_proximal(0.1, mask=lambda p: {k: v.ndim > 0 and k == "w" for k, v in p.items()})
    updates, _ = tx.update(fl.tree.zeros_like(params), tx.init(params), params)
    assert updates["w"].tolist() == pytest.approx([-0.1, 0.05])  # prox(1) = 0.9, prox(-0.05) = 0
    assert updates["b"].tolist() == [0.0]  # unselected leaf passes through
    with pytest.raises(ValueError, match="needs params"):
        tx.update(updates, tx.init(params))
    with pytest.raises(ValueError, match="needs params"):
        fl.add_l1_subgradient(0.1).update(updates, None)


# ----------------------------------------------------------------------------- perturb-then-descend


def _uam_reference(net, batches, rhos, lr, sign=1.0):
    """Explicit UAM on an nn.Module: perturb by ρ g_F/||g_F||, retain gradient there, restore, SGD step."""
    net = copy.deepcopy(net).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for rho, b in zip(rhos, batches):
        loss_f = sign * F.cross_entropy(net(b["forget"][0]), b["forget"][1])
        grads = torch.autograd.grad(loss_f, list(net.parameters()))
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        eps = [rho * g / (norm + 1e-12) for g in grads]
        with torch.no_grad():
            for p, e in zip(net.parameters(), eps):
                p.add_(e)
        opt.zero_grad()
        F.cross_entropy(net(b["retain"][0]), b["retain"][1]).backward()
        with torch.no_grad():
            for p, e in zip(net.parameters(), eps):
                p.sub_(e)
        opt.step()
    return dict(net.named_parameters()), dict(net.named_buffers())


def test_perturb_then_descend_equals_explicit_perturb_gradient_restore_descend():
    net = tiny_mlp()  # with BatchNorm: the forget forward, then the retain forward, update the statistics
    model, params, buffers = fl.functional(net)
    batches = split_batches(5)
    total, rho, lr = 4, 0.5, 0.05
    schedule = fl.cosine_schedule(rho, total)
    method = fl.perturb_descend_method(
        fl.forget_ce(model), fl.retain_ce(model),
        fl.chain(fl.perturb_then_descend(schedule), fl.sgd(lr, 0.9, weight_decay=5e-4)),
    )  # fmt: skip
    state = method.init(params, buffers)
    for t, b in enumerate(batches):
        params, buffers, state, metrics = method.step(params, buffers, state, b, fl.random.key(0, t))
    rhos = [rho * 0.5 * (1 + math.cos(math.pi * min(t, total) / total)) for t in range(len(batches))]
    assert rhos[-1] == 0.0  # clamped after total steps: the last step is plain SGD on the retain loss
    want_params, want_buffers = _uam_reference(net, batches, rhos, lr)
    assert max_abs_diff(params, want_params) < 1e-5
    assert max_abs_diff(buffers, want_buffers) < 1e-5
    assert set(metrics) >= {"loss", "retain_ce", "perturb_loss", "perturb_forget_ce"}


def test_uam_preset_perturbs_toward_lower_forget_loss_by_default():
    net = tiny_mlp()
    model, params, buffers = fl.functional(net)
    batches = split_batches(3)
    method = fl.uam(model, fl.sgd(0.05, 0.9, weight_decay=5e-4), rho=0.3)
    state = method.init(params, buffers)
    for t, b in enumerate(batches):
        params, buffers, state, _ = method.step(params, buffers, state, b, fl.random.key(0, t))
    want_params, _ = _uam_reference(net, batches, [0.3] * 3, 0.05, sign=-1.0)
    assert max_abs_diff(params, want_params) < 1e-5


def test_uam_ascent_sample_is_reproducible_and_uses_a_subset():
    model, params, buffers = fl.functional(tiny_mlp())
    batch = split_batches(1, forget_size=12)[0]
    method = fl.uam(model, rho=0.3, ascent_sample=4)

    def run(seed):
        return method.step(params, buffers, method.init(params, buffers), batch, fl.random.key(seed))[0]

    assert max_abs_diff(run(1), run(1)) == 0.0
    assert max_abs_diff(run(1), run(2)) > 0.0  # another key draws another subset
    full = fl.uam(model, rho=0.3).step(params, buffers, method.init(params, buffers), batch, fl.random.key(1))[0]
    assert max_abs_diff(run(1), full) > 0.0


def test_perturb_then_descend_errors_are_clear():
    model, params, buffers = fl.functional(tiny_mlp())
    batch = split_batches(1)[0]
    tx = fl.perturb_then_descend(0.1)
    with pytest.raises(ValueError, match="grad_fn"):
        tx.update(params, tx.init(params), params)
    method = fl.perturb_descend_method(fl.forget_ce(model), fl.retain_ce(model), fl.sgd(0.1))
    with pytest.raises(ValueError, match="never called grad_fn"):
        method.step(params, buffers, method.init(params, buffers), batch, fl.random.key(0))


# ----------------------------------------------------------------------------- top-k mask


def test_topk_mask_keeps_exactly_k_with_deterministic_tie_break():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.randint(0, 4, (7, 5), generator=g).float(), "b": torch.randint(0, 4, (13,), generator=g)}
    scores["b"] = scores["b"].float()
    flat = torch.cat([scores["a"].reshape(-1), scores["b"].reshape(-1)]).tolist()
    for fraction in (0.1, 0.37, 0.5, 0.9, 1.0):
        mask = fl.topk_mask(scores, fraction)
        k = int(fraction * len(flat))
        chosen = sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k]  # by score, ties by flat position
        want = torch.zeros(len(flat), dtype=torch.bool)
        want[chosen] = True
        got = torch.cat([mask["a"].reshape(-1), mask["b"].reshape(-1)])
        assert got.dtype == torch.bool and int(got.sum()) == k
        assert torch.equal(got, want), fraction


def test_topk_mask_rejects_bad_input():
    scores = {"w": torch.arange(10.0)}
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            fl.topk_mask(scores, bad)
    with pytest.raises(ValueError, match="keeps none"):
        fl.topk_mask(scores, 0.05)
    with pytest.raises(ValueError, match="NaN"):
        fl.topk_mask({"w": torch.tensor([1.0, float("nan")])}, 0.5)
