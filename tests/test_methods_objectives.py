"""Split-batch objectives, negate-forget and the relabellers, against direct computations."""

import pytest
import torch
import torch.nn.functional as F

import funlearn as fl
from methods_common import NUM_CLASSES, split_batches, tiny_mlp


def _module_and_functional(seed=0, batch_norm=True):
    net = tiny_mlp(seed, batch_norm)
    model, params, buffers = fl.functional(net)
    return net, model, params, buffers


def test_weighted_sum_uses_separate_forwards_in_order_and_skips_zero_weights():
    net, model, params, buffers = _module_and_functional()
    batch = split_batches(1)[0]
    objective = fl.weighted_sum(
        (0.7, fl.retain_ce(model)), (0.3, fl.negate(fl.forget_ce(model))), (0.0, fl.forget_ce(model))
    )
    loss, (new_buffers, metrics) = objective(params, buffers, batch, fl.random.key(0))
    net.train()
    ce_r = F.cross_entropy(net(batch["retain"][0]), batch["retain"][1])  # BN stats: retain, then forget
    ce_f = F.cross_entropy(net(batch["forget"][0]), batch["forget"][1])
    assert loss.item() == pytest.approx((0.7 * ce_r - 0.3 * ce_f).item(), abs=1e-6)
    assert metrics["retain_ce"].item() == pytest.approx(ce_r.item(), abs=1e-6)
    assert metrics["forget_ce"].item() == pytest.approx(ce_f.item(), abs=1e-6)
    for k, v in net.named_buffers():
        assert torch.allclose(new_buffers[k].float(), v.float(), atol=1e-6), k  # two updates, like the module
    assert torch.equal(buffers["2.num_batches_tracked"], torch.tensor(0))  # inputs untouched


def test_negate_ceiling_stops_the_ascent_gradient():
    _, model, params, buffers = _module_and_functional(batch_norm=False)
    batch = split_batches(1)[0]
    ce = fl.forget_ce(model)
    value = ce(params, buffers, batch, None)[0].item()

    def grad(obj):
        return fl.value_and_grad(obj, has_aux=True)(params, buffers, batch, None)

    (loss, _), g_plain = grad(fl.negate(ce))
    (_, _), g_ce = grad(ce)
    assert loss.item() == pytest.approx(-value)
    assert all(torch.allclose(g_plain[k], -g_ce[k]) for k in g_ce)
    (loss_hi, _), g_hi = grad(fl.negate(ce, ceiling=2 * value))  # below the ceiling: plain ascent
    assert all(torch.allclose(g_hi[k], -g_ce[k]) for k in g_ce) and loss_hi.item() == pytest.approx(-value)
    (loss_lo, _), g_lo = grad(fl.negate(ce, ceiling=0.5 * value))  # above it: no gradient
    assert loss_lo.item() == pytest.approx(-0.5 * value)
    assert all(float(v.abs().max()) == 0.0 for v in g_lo.values())
    with pytest.raises(ValueError, match="ceiling"):
        fl.negate(ce, ceiling=0.0)


def test_teacher_kl_equals_kl_div_batchmean_times_t_squared():
    net, model, params, buffers = _module_and_functional()
    teacher_net, _, t_params, t_buffers = _module_and_functional(seed=1)
    batch = split_batches(1)[0]
    objective = fl.teacher_kl(model, t_params, t_buffers, "forget", temperature=3.0)
    loss, (_, metrics) = objective(params, buffers, batch, None)
    x = batch["forget"][0]
    with torch.no_grad():
        t = teacher_net.eval()(x)
    s = net.train()(x)
    want = F.kl_div(F.log_softmax(s / 3.0, 1), F.softmax(t / 3.0, 1), reduction="batchmean") * 9.0
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert set(metrics) == {"forget_kl"}


def test_objectives_reject_plain_batches_and_bad_terms():
    _, model, params, buffers = _module_and_functional()
    plain = split_batches(1)[0]["retain"]
    with pytest.raises(ValueError, match=r"batch\['retain'\]"):
        fl.retain_ce(model)(params, buffers, plain, None)
    with pytest.raises(ValueError, match="at least one"):
        fl.weighted_sum()
    with pytest.raises(ValueError, match="non-zero"):
        fl.weighted_sum((0.0, fl.retain_ce(model)))
    with pytest.raises(TypeError, match="pair"):
        fl.weighted_sum(fl.retain_ce(model))


def test_on_subset_draws_a_reproducible_subset_from_the_key():
    seen = []

    def record(params, buffers, batch, key):
        seen.append(batch["forget"][1].clone())
        return torch.zeros(()), (buffers, {})

    y = torch.arange(20)
    batch = {"forget": (y.float().reshape(20, 1), y), "retain": (torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))}
    sub = fl.on_subset(record, "forget", 5)
    for seed in (3, 3, 4):
        sub({}, {}, batch, fl.random.key(seed))
    assert seen[0].numel() == 5 and len(set(seen[0].tolist())) == 5
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])


# ----------------------------------------------------------------------------- relabellers


def test_random_labels_are_reproducible_for_a_seed():
    y = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(0))
    a = fl.random_labels(y, 10, fl.random.key(7, 3))
    b = fl.random_labels(y, 10, fl.random.key(7, 3))
    c = fl.random_labels(y, 10, fl.random.key(7, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == y.dtype and a.shape == y.shape and int(a.min()) >= 0 and int(a.max()) <= 9
    assert int((a == y).sum()) > 0  # without exclusion the true label is drawn about 1 time in 10


def test_random_labels_exclude_true_never_yields_the_true_label_and_cover_the_others():
    y = torch.randint(0, 4, (4000,), generator=torch.Generator().manual_seed(1))
    new = fl.random_labels(y, 4, fl.random.key(0), exclude_true=True)
    assert int((new == y).sum()) == 0
    for c in range(4):  # uniform over the 3 wrong classes: each about 1/3 of the rows of class c
        counts = torch.bincount(new[y == c], minlength=4).float()
        assert counts[c] == 0
        share = counts[torch.arange(4) != c] / counts.sum()
        assert torch.all((share - 1 / 3).abs() < 0.06), (c, share)
    assert torch.equal(new, fl.uniform_relabel(4, exclude_true=True)(None, None, None, y, fl.random.key(0)))
    with pytest.raises(ValueError, match="num_classes"):
        fl.random_labels(y, 1, fl.random.key(0))


def test_best_wrong_class_as_logit_relabel_uses_the_same_forward():
    net, model, params, buffers = _module_and_functional()
    batch = split_batches(1, forget_size=32)[0]
    x, y = batch["forget"]
    loss, (new_buffers, _) = fl.forget_ce(model, logit_relabel=fl.best_wrong_class)(params, buffers, batch, None)
    logits = net.train()(x)
    labels = []
    for i in range(len(y)):  # independent per-sample computation of the runner-up class
        order = [c for c in logits[i].argsort(descending=True).tolist() if c != int(y[i])]
        labels.append(order[0])
    assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.tensor(labels)).item(), abs=1e-6)
    assert int(new_buffers["2.num_batches_tracked"]) == 1  # one forward, not two
    with pytest.raises(ValueError, match="not both"):
        fl.forget_ce(model, relabel=fl.uniform_relabel(NUM_CLASSES), logit_relabel=fl.best_wrong_class)


def test_fgsm_relabel_matches_a_per_sample_attack_on_the_original_model():
    net, model, params, buffers = _module_and_functional()
    x, y = split_batches(1, forget_size=16)[0]["forget"]
    x = torch.rand_like(x)  # pixel space
    current = {k: v + 1.0 for k, v in params.items()}  # the attack must ignore the current weights
    got = fl.fgsm_relabel(model, params, buffers, eps=0.2)(current, buffers, x, y, None)
    net.eval()
    for i in range(len(y)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        F.cross_entropy(net(xi), y[i : i + 1]).backward()
        x_adv = (xi + 0.2 * xi.grad.sign()).clamp(0, 1)
        with torch.no_grad():
            logits = net(x_adv)[0]
        logits[int(y[i])] = -float("inf")
        assert int(got[i]) == int(logits.argmax()), i
    assert bool((got != y).all())
    with pytest.raises(ValueError, match="eps"):
        fl.fgsm_relabel(model, params, buffers, eps=0.0)


def test_forget_ce_with_relabel_uses_the_new_labels():
    _, model, params, buffers = _module_and_functional()
    batch = split_batches(1)[0]
    relabel = fl.uniform_relabel(NUM_CLASSES, exclude_true=True)
    loss, _ = fl.forget_ce(model, relabel=relabel)(params, buffers, batch, fl.random.key(5))
    labels = fl.random_labels(batch["forget"][1], NUM_CLASSES, fl.random.key(5), exclude_true=True)
    logits, _ = model.apply(params, buffers, batch["forget"][0], train=True)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-6)
