"""Each preset's steps against the same method written out with an nn.Module and torch.optim."""

import copy

import pytest
import torch
import torch.nn.functional as F

import funlearn as fl
from methods_common import NUM_CLASSES, max_abs_diff, split_batches, tiny_mlp


def _run(method, params, buffers, batches, seed=0):
    state = method.init(params, buffers)
    history = []
    for t, batch in enumerate(batches):
        params, buffers, state, metrics = method.step(params, buffers, state, batch, fl.random.key(seed, t))
        history.append(metrics)
    return params, buffers, state, history


def _reference(net, batches, loss_fn, make_opt):
    """The method as plain PyTorch: train mode, loss_fn(net, batch, t), backward, optimizer step."""
    net = copy.deepcopy(net).train()
    opt = make_opt(net.parameters())
    for t, batch in enumerate(batches):
        opt.zero_grad()
        loss_fn(net, batch, t).backward()
        opt.step()
    return dict(net.named_parameters()), dict(net.named_buffers())


def _sgd(lr, momentum=0.9, wd=5e-4):
    return lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum, weight_decay=wd)


def _ce(net, batch, split, labels=None):
    x, y = batch[split]
    return F.cross_entropy(net(x), y if labels is None else labels)


def _kl(student, teacher, x, temperature, student_logits=None):
    with torch.no_grad():
        t = teacher(x)
    s = student(x) if student_logits is None else student_logits
    kl = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    return kl * temperature**2


def _torch_random_labels(y, seed, t, exclude_true):
    """Labels drawn directly with torch.randint from the step key (shift past the true label)."""
    key = fl.random.key(seed, t)
    if not exclude_true:
        return torch.randint(0, NUM_CLASSES, y.shape, generator=key)
    r = torch.randint(0, NUM_CLASSES - 1, y.shape, generator=key)
    return torch.where(r >= y, r + 1, r)


CASES = {
    "finetune": (
        lambda m: fl.finetune(m, fl.sgd(0.05, 0.9, weight_decay=5e-4)),
        lambda net, b, t: _ce(net, b, "retain"),
    ),
    "neggrad": (
        lambda m: fl.neggrad(m, fl.sgd(0.05, 0.9, weight_decay=5e-4), ceiling=None),
        lambda net, b, t: -_ce(net, b, "forget"),
    ),
    "neggrad_plus": (
        lambda m: fl.neggrad_plus(m, fl.sgd(0.05, 0.9, weight_decay=5e-4), retain_weight=0.8),
        lambda net, b, t: 0.8 * _ce(net, b, "retain") - 0.2 * _ce(net, b, "forget"),
    ),
    "random_label": (
        lambda m: fl.random_label(m, NUM_CLASSES, fl.sgd(0.05, 0.9, weight_decay=5e-4), retain_weight=0.5),
        lambda net, b, t: 0.5 * _ce(net, b, "retain")
        + _ce(net, b, "forget", _torch_random_labels(b["forget"][1], 0, t, False)),
    ),
    "random_label_exclude_true": (
        lambda m: fl.random_label(m, NUM_CLASSES, fl.sgd(0.05, 0.9, weight_decay=5e-4), exclude_true=True),
        lambda net, b, t: _ce(net, b, "retain")
        + _ce(net, b, "forget", _torch_random_labels(b["forget"][1], 0, t, True)),
    ),
    "l1_sparse_subgradient": (
        lambda m: fl.l1_sparse(m, 4, fl.sgd(0.05, 0.9, weight_decay=5e-4), l1=0.01, mode="subgradient"),
        lambda net, b, t: _ce(net, b, "retain")
        + 0.01 * max(0.0, 1 - t / 4) * sum(p.abs().sum() for p in net.parameters()),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_preset_steps_equal_the_plain_pytorch_method(name):
    make_method, loss_fn = CASES[name]
    net = tiny_mlp()
    model, params, buffers = fl.functional(net)
    batches = split_batches(5)
    got_params, got_buffers, _, history = _run(make_method(model), params, buffers, batches)
    want_params, want_buffers = _reference(net, batches, loss_fn, _sgd(0.05))
    assert max_abs_diff(got_params, want_params) < 1e-5
    assert max_abs_diff(got_buffers, want_buffers) < 1e-5
    assert "loss" in history[-1]


def test_bad_teacher_step_equals_plain_pytorch_with_a_seeded_random_teacher():
    net = tiny_mlp()
    model, params, buffers = fl.functional(net)
    batches = split_batches(4)
    method = fl.bad_teacher(model, fl.adam(1e-2), seed=3, temperature=2.0)
    got, got_buffers, state, _ = _run(method, params, buffers, batches)

    competent = copy.deepcopy(net).eval()
    incompetent = copy.deepcopy(net)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        for m in incompetent.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    incompetent.eval()
    want, want_buffers = _reference(
        net, batches,
        lambda s, b, t: _kl(s, competent, b["retain"][0], 2.0) + _kl(s, incompetent, b["forget"][0], 2.0),
        lambda p: torch.optim.Adam(p, lr=1e-2),
    )  # fmt: skip
    assert max_abs_diff(got, want) < 1e-5
    assert max_abs_diff(got_buffers, want_buffers) < 1e-5
    bad_params, bad_buffers = state.references[1]
    assert torch.equal(bad_buffers["2.running_mean"], torch.zeros(16))  # fresh BatchNorm statistics
    assert torch.equal(bad_buffers["2.running_var"], torch.ones(16))


def test_boundary_shrink_fine_tunes_toward_the_original_models_fgsm_labels():
    net = tiny_mlp()
    model, params, buffers = fl.functional(net)
    batches = split_batches(4)
    for b in batches:
        b["forget"] = (torch.rand_like(b["forget"][0]), b["forget"][1])
    got, _, state, _ = _run(fl.boundary_shrink(model, fl.sgd(0.05, 0.9), eps=0.3), params, buffers, batches)

    original = copy.deepcopy(net).eval()

    def nearest_wrong(x, y):  # FGSM on the original model, then the best wrong class
        x = x.clone().requires_grad_(True)
        F.cross_entropy(original(x), y, reduction="sum").backward()
        with torch.no_grad():
            logits = original((x + 0.3 * x.grad.sign()).clamp(0, 1))
        return logits.scatter(1, y[:, None], -float("inf")).argmax(1)

    want, _ = _reference(
        net, batches, lambda s, b, t: _ce(s, b, "forget", nearest_wrong(*b["forget"])), _sgd(0.05, wd=0.0)
    )
    assert max_abs_diff(got, want) < 1e-5
    assert max_abs_diff(state.references[0][0], params) == 0.0  # the original stays frozen in the state


def test_boundary_shrink_runner_up_variant_uses_the_current_model():
    net = tiny_mlp(batch_norm=False)  # without BatchNorm train-mode logits are eval-mode logits
    model, params, buffers = fl.functional(net)
    batches = split_batches(3)
    method = fl.boundary_shrink(model, fl.sgd(0.05), labels="runner_up", retain_weight=1.0)
    got, *_ = _run(method, params, buffers, batches)

    def runner_up(s, x, y):
        with torch.no_grad():
            return s(x).scatter(1, y[:, None], -float("inf")).argmax(1)

    want, _ = _reference(
        net, batches,
        lambda s, b, t: _ce(s, b, "retain") + _ce(s, b, "forget", runner_up(s, *b["forget"])),
        _sgd(0.05, momentum=0.0, wd=0.0),
    )  # fmt: skip
    assert max_abs_diff(got, want) < 1e-5


def test_scrub_alternates_max_steps_only_in_the_first_msteps_epochs():
    net = tiny_mlp()
    model, params, buffers = fl.functional(net)
    steps_per_epoch, msteps, temperature = 2, 2, 2.0
    batches = split_batches(3 * steps_per_epoch + 1)
    method = fl.scrub(
        model, steps_per_epoch, fl.adam(1e-2), msteps=msteps, temperature=temperature, retain_kl_weight=0.5
    )
    got, got_buffers, state, history = _run(method, params, buffers, batches)
    flags = [float(m["max_step"]) for m in history]
    assert flags == [1.0] * (msteps * steps_per_epoch) + [0.0] * (len(batches) - msteps * steps_per_epoch)
    assert all(("max_loss" in m) == bool(f) for m, f in zip(history, flags))
    assert int(state.count) == len(batches)

    # plain PyTorch SCRUB: one Adam shared by the max-step (forget) and the min-step (retain)
    student, teacher = copy.deepcopy(net).train(), copy.deepcopy(net).eval()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    for t, b in enumerate(batches):
        if t // steps_per_epoch < msteps:
            opt.zero_grad()
            (-_kl(student, teacher, b["forget"][0], temperature)).backward()
            opt.step()
        opt.zero_grad()
        x, y = b["retain"]
        logits = student(x)  # one forward for both terms of the min-step
        (F.cross_entropy(logits, y) + 0.5 * _kl(student, teacher, x, temperature, logits)).backward()
        opt.step()
    assert max_abs_diff(got, dict(student.named_parameters())) < 1e-5
    assert max_abs_diff(got_buffers, dict(student.named_buffers())) < 1e-5


def test_scrub_and_bad_teacher_resume_exactly_from_an_engine_checkpoint(tmp_path):
    model, params, buffers = fl.functional(tiny_mlp())
    batches = split_batches(3)
    for name, make in {"scrub": lambda: fl.scrub(model, steps_per_epoch=3, msteps=1),
                       "bad_teacher": lambda: fl.bad_teacher(model, seed=1)}.items():
        options = dict(seed=0, progress=False)
        straight = fl.run(make(), params, buffers, batches, epochs=2, **options)
        fl.run(make(), params, buffers, batches, epochs=1, run_dir=tmp_path / name, **options)
        resumed = fl.run(make(), params, buffers, batches, epochs=2, run_dir=tmp_path / name, resume=True, **options)
        assert max_abs_diff(resumed.params, straight.params) == 0.0, name
        assert max_abs_diff(resumed.buffers, straight.buffers) == 0.0, name


def test_scrub_teacher_is_the_model_given_to_init():
    model, params, buffers = fl.functional(tiny_mlp())
    method = fl.scrub(model, steps_per_epoch=1)
    state = method.init(params, buffers)
    params2, _, state, _ = method.step(params, buffers, state, split_batches(1)[0], fl.random.key(0))
    assert max_abs_diff(state.teacher_params, params) == 0.0 and max_abs_diff(params2, params) > 0.0
    assert all(v.data_ptr() != params[k].data_ptr() for k, v in state.teacher_params.items())  # a copy


def test_l1_sparse_proximal_makes_exact_zeros_and_decays_to_finetune():
    model, params, buffers = fl.functional(tiny_mlp(batch_norm=False))
    batches = split_batches(6)
    sparse, *_ = _run(fl.l1_sparse(model, total_steps=3, l1=2.0, learning_rate=0.05), params, buffers, batches[:3])
    dense, *_ = _run(fl.finetune(model, fl.sgd(0.05, 0.9, weight_decay=5e-4)), params, buffers, batches[:3])
    zeros = sum(int((v == 0).sum()) for v in sparse.values())
    assert zeros > 0 and sum(int((v == 0).sum()) for v in dense.values()) == 0
    # after total_steps the coefficient is 0: a step is a plain SGD step with the same momentum state
    method = fl.l1_sparse(model, total_steps=2, l1=2.0, learning_rate=0.05)
    p, b, state, _ = _run(method, params, buffers, batches[:2])
    p_next, *_ = method.step(p, b, state, batches[2], fl.random.key(0, 2))
    sgd_state = state[0]  # the optimizer's part of chain(sgd, l1_proximal)
    tx = fl.sgd(0.05, 0.9, weight_decay=5e-4)
    (_, _), g = fl.value_and_grad(fl.retain_ce(model), has_aux=True)(p, b, batches[2], None)
    u, _ = tx.update(g, sgd_state, p)
    assert max_abs_diff(p_next, fl.apply_updates(p, u)) < 1e-7


# ----------------------------------------------------------------------------- SalUn


def test_saliency_scores_match_module_gradients():
    net = tiny_mlp()
    model, params, buffers = fl.functional(net)
    batches = [b["forget"] for b in split_batches(3)]
    grads = []
    for x, y in batches:
        ref = copy.deepcopy(net).eval()
        F.cross_entropy(ref(x), y).backward()
        grads.append({k: p.grad for k, p in ref.named_parameters()})
    summed = fl.saliency_scores(model, params, buffers, batches)
    averaged = fl.saliency_scores(model, params, buffers, batches, mode="batch_abs_mean")
    for k in params:
        assert torch.allclose(summed[k], sum(g[k] for g in grads).abs(), atol=1e-6)
        assert torch.allclose(averaged[k], sum(g[k].abs() for g in grads) / 3, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        fl.saliency_scores(model, params, buffers, batches, mode="max")
    with pytest.raises(ValueError, match="no batch"):
        fl.saliency_scores(model, params, buffers, [])


def test_salun_masked_weights_stay_bit_identical_after_50_steps():
    model, params, buffers = fl.functional(tiny_mlp())
    batches = split_batches(50)
    forget = [b["forget"] for b in batches[:4]]
    mask = fl.saliency_mask(model, params, buffers, forget, fraction=0.3)
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == int(0.3 * total)
    method = fl.salun(model, params, buffers, forget, NUM_CLASSES, fl.sgd(0.05, 0.9, weight_decay=5e-3), fraction=0.3)
    new, *_ = _run(method, params, buffers, batches)
    for k, m in mask.items():
        assert torch.equal(new[k][~m], params[k][~m]), k  # weight decay and momentum never leak
        assert bool((new[k][m] != params[k][m]).all()), k  # every salient weight moved


# ----------------------------------------------------------------------------- bad input


def test_presets_reject_bad_arguments_before_any_work():
    model, _, _ = fl.functional(tiny_mlp())
    with pytest.raises(ValueError, match="retain_weight"):
        fl.neggrad_plus(model, retain_weight=1.0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fl.scrub(model, steps_per_epoch=0)
    with pytest.raises(ValueError, match="msteps"):
        fl.scrub(model, steps_per_epoch=5, msteps=-1)
    with pytest.raises(ValueError, match="total_steps"):
        fl.l1_sparse(model, total_steps=0)
    with pytest.raises(ValueError, match="mode"):
        fl.l1_sparse(model, total_steps=10, mode="lasso")
    with pytest.raises(ValueError, match="labels"):
        fl.boundary_shrink(model, labels="pgd")
    with pytest.raises(TypeError, match="GradientTransformation"):
        fl.finetune(model, tx=torch.optim.SGD)
    with pytest.raises(ValueError, match="temperature"):
        fl.bad_teacher(model, temperature=0.0)
