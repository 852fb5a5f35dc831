"""Option strings: parsed safely, and the optimizers/schedules they build equal torch's own classes."""

from __future__ import annotations

import math

import pytest
import torch

import funlearn as fl
from funlearn.compat.optim import parse_minimizer, parse_optimizer, parse_scheduler, uam_rho_schedule
from funlearn.compat.options import parse_option


@pytest.mark.parametrize(
    "text, expected",
    [
        ("SGD(lr=0.01, momentum=0.9)", ("SGD", (), {"lr": 0.01, "momentum": 0.9})),
        ("Adam(lr=1e-3, betas=(0.9, 0.999))", ("Adam", (), {"lr": 1e-3, "betas": (0.9, 0.999)})),
        ("Step(milestones=[2, 4], gamma=0.1)", ("Step", (), {"milestones": [2, 4], "gamma": 0.1})),
        ("Cosine", ("Cosine", (), {})),
        ("UAM(rho=0.5, cosine_total_step=100)", ("UAM", (), {"rho": 0.5, "cosine_total_step": 100})),
        ("UAM(rho=0.5, cosine_total_step=None, gamma=-1.5)", ("UAM", (), {"rho": 0.5, "cosine_total_step": None, "gamma": -1.5})),
    ],
)
def test_parse_option_accepts_the_issue_forms(text, expected):
    allowed = {"SGD", "Adam", "Step", "Cosine", "UAM"}
    assert tuple(parse_option(text, allowed)) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('true')", "not allowed"),
        ("os.system('true')", "not allowed"),
        ("torch.optim.SGD(lr=0.1)", "not allowed"),
        ("SGD(lr=__import__('os').getpid())", "not a literal"),
        ("SGD(lr=x)", "not a literal"),
        ("SGD(lr=0.1).__class__", "not allowed"),
        ("Evil(lr=0.1)", "unknown optimizer 'Evil'"),
        ("SGD(**{'lr': 0.1})", r"\*args and \*\*kwargs"),
        ("[SGD for SGD in ()]", "not allowed"),
        ("SGD(lr=0.1); import os", "not of the form"),
        ("lambda: 0", "not allowed"),
    ],
)
def test_parse_option_rejects_code(text, message):
    with pytest.raises(ValueError, match=message):
        parse_optimizer(text)


def test_optimizer_arguments_are_checked_against_torch_signatures():
    with pytest.raises(ValueError, match="unexpected keyword argument 'momentun'.*SGD accepts lr, momentum"):
        parse_optimizer("SGD(lr=0.1, momentun=0.9)")
    with pytest.raises(ValueError, match="lr must be positive"):
        parse_optimizer("SGD(lr=-1)")
    with pytest.raises(ValueError, match="betas must be a pair"):
        parse_optimizer("Adam(lr=1e-3, betas=0.9)")
    assert parse_optimizer("SGD(0.05, 0.9)").lr == 0.05  # positional, as torch.optim.SGD(params, lr, momentum)


def _torch_steps(opt_cls, kwargs, params, grads_seq):
    ps = [torch.nn.Parameter(p.clone()) for p in params.values()]
    opt = opt_cls(ps, **kwargs)
    for grads in grads_seq:
        for p, g in zip(ps, grads.values()):
            p.grad = g.clone()
        opt.step()
    return {k: p.detach() for k, p in zip(params, ps)}


def _funlearn_steps(tx, params, grads_seq):
    state = tx.init(params)
    for grads in grads_seq:
        updates, state = tx.update(grads, state, params)
        params = fl.apply_updates(params, updates)
    return params


@pytest.mark.parametrize(
    "text, torch_cls, kwargs",
    [
        ("SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", torch.optim.SGD, dict(lr=0.01, momentum=0.9, weight_decay=5e-4)),
        ("SGD(lr=0.1, momentum=0.9, nesterov=True)", torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("Adam(lr=1e-3, betas=(0.8, 0.99), weight_decay=1e-2)", torch.optim.Adam, dict(lr=1e-3, betas=(0.8, 0.99), weight_decay=1e-2)),
        ("AdamW(lr=1e-3, eps=1e-6)", torch.optim.AdamW, dict(lr=1e-3, eps=1e-6)),
    ],
)
def test_optimizer_strings_step_like_torch_optim(text, torch_cls, kwargs):
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}
    grads_seq = [{k: torch.randn(v.shape, generator=g) for k, v in params.items()} for _ in range(4)]
    spec = parse_optimizer(text)
    ours = _funlearn_steps(spec.build(spec.lr), params, grads_seq)
    theirs = _torch_steps(torch_cls, kwargs, params, grads_seq)
    for k in params:
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=1e-6)


def _torch_lrs(make_scheduler, n_epochs, n_iters, per_epoch):
    """The lr torch uses at every iteration, stepping the scheduler per epoch or per iteration."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(n_epochs):
        for _ in range(n_iters):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if not per_epoch:
                scheduler.step()
        if per_epoch:
            scheduler.step()
    return lrs


@pytest.mark.parametrize(
    "text, scheduler_type, make, per_epoch",
    [
        ("Step(milestones=[2, 3], gamma=0.1)", None, lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 3], 0.1), True),
        ("Cosine", None, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 4, eta_min=0), True),
        ("MultiStepLR(milestones=[5, 9], gamma=0.5)", "Iter", lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 9], 0.5), False),
        ("StepLR(step_size=1, gamma=0.5)", "Epoch", lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.5), True),
        ("ExponentialLR(gamma=0.9)", "Iter", lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9), False),
        ("CosineAnnealingLR(T_max=20, eta_min=0.01)", "Iter",
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 20, eta_min=0.01), False),
        ("Cyclic(base_lr=0.0, max_lr=0.2)", None,
         lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.0, 0.2, step_size_up=8, step_size_down=8, cycle_momentum=False), False),
    ],
)
def test_schedulers_give_torchs_learning_rates(text, scheduler_type, make, per_epoch):
    n_epochs, n_iters = 4, 4  # 16 iterations; CosineAnnealingLR(T_max=20) stays within its first period (torch is periodic after it)
    spec = parse_scheduler(text, scheduler_type)
    schedule = spec.build(0.1, n_iters, n_epochs)
    ours = [float(schedule(t)) for t in range(n_epochs * n_iters)]
    theirs = _torch_lrs(make, n_epochs, n_iters, per_epoch)
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-7)


def test_scheduler_type_rules():
    with pytest.raises(ValueError, match="needs scheduler_type='Epoch' or 'Iter'"):
        parse_scheduler("MultiStepLR(milestones=[2])")
    with pytest.raises(ValueError, match="steps per epoch"):
        parse_scheduler("Step(milestones=[2])", "Iter")
    with pytest.raises(ValueError, match="scheduler_type must be"):
        parse_scheduler("Cosine", "Batch")
    with pytest.raises(ValueError, match="unknown scheduler 'LambdaLR'"):
        parse_scheduler("LambdaLR(lr_lambda=0)", "Iter")
    assert parse_scheduler(None) is None


def test_uam_rho_schedule_is_torchunlearns_cosine_clamped():
    rho, start, total = 0.5, 2, 6
    ours = [float(uam_rho_schedule(rho, total, start)(t)) for t in range(10)]
    # torchunlearn's CosineAnnealingUpdater: rho before start, then rho (1 + cos(pi e / E)) / 2 ... (periodic);
    # funlearn clamps at 0 after total_step (defect M2)
    expected = [rho if c < start else (rho * (1 + math.cos(math.pi * min(c - start, total - start) / (total - start))) / 2)
                for c in range(10)]  # fmt: skip
    assert ours == pytest.approx(expected, abs=1e-6)
    assert ours[-1] == pytest.approx(0.0, abs=1e-7)
    assert float(uam_rho_schedule(0.3)(1000)) == pytest.approx(0.3)


def test_minimizer_strings():
    uam = parse_minimizer("UAM(rho=0.5, cosine_total_step=None, gamma=1.0)")
    assert (uam.name, uam.perturb, uam.ascent_sample) == ("UAM", "unlearn", None)
    assert float(uam.rho(7)) == pytest.approx(0.5)
    assert parse_minimizer("UAM(rho=0.1, perturb='forget_ce', ascent_sample=8)").perturb == "forget_ce"
    assert parse_minimizer("SAM(rho=0.05)").name == "SAM"
    with pytest.warns(UserWarning, match="gamma has no effect"):
        parse_minimizer("UAM(rho=0.5, gamma=0.3)")
    with pytest.raises(ValueError, match="perturb must be"):
        parse_minimizer("UAM(rho=0.5, perturb='up')")
    with pytest.raises(ValueError, match="must exceed cosine_start_step"):
        parse_minimizer("UAM(rho=0.5, cosine_total_step=3, cosine_start_step=3)")
    with pytest.raises(ValueError, match="unknown minimizer 'ASAM'"):
        parse_minimizer("ASAM(rho=0.5)")
