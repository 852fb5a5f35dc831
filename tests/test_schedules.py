import math

import pytest
import torch

import funlearn as fl


def _values(s, steps):
    return [float(s(t)) for t in steps]


def test_cosine_matches_formula_and_is_clamped():
    s = fl.cosine_schedule(0.1, 10)
    for t in range(10):
        assert math.isclose(float(s(t)), 0.05 * (1 + math.cos(math.pi * t / 10)), rel_tol=1e-6, abs_tol=1e-9)
    assert _values(s, [10, 11, 25, 1000]) == [0.0, 0.0, 0.0, 0.0]  # never rises again


def test_cosine_matches_torch_cosine_annealing():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8)
    ours = fl.cosine_schedule(0.1, 8)
    for t in range(8):
        assert math.isclose(opt.param_groups[0]["lr"], float(ours(t)), rel_tol=1e-5, abs_tol=1e-8)
        opt.step()
        sched.step()


def test_cosine_warmup_and_end_value():
    s = fl.cosine_schedule(1.0, 10, warmup_steps=4, end_value=0.1)
    assert _values(s, [0, 2, 4]) == pytest.approx([0.0, 0.5, 1.0])
    assert float(s(7)) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert _values(s, [10, 50]) == pytest.approx([0.1, 0.1])
    with pytest.raises(ValueError, match="warmup_steps"):
        fl.cosine_schedule(1.0, 10, warmup_steps=10)


def test_step_multistep_linear_exponential():
    assert _values(fl.multistep_schedule(1.0, [2, 4], 0.1), [0, 1, 2, 3, 4, 9]) == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert _values(fl.step_schedule(1.0, 3, 0.5), [0, 2, 3, 6, 7]) == pytest.approx([1, 1, 0.5, 0.25, 0.25])
    assert _values(fl.linear_schedule(1.0, 0.0, 4), [0, 1, 2, 4, 8]) == pytest.approx([1, 0.75, 0.5, 0, 0])
    assert _values(fl.linear_schedule(1.0, 0.0, 4, begin=2), [0, 2, 4, 6]) == pytest.approx([1, 1, 0.5, 0])
    assert _values(fl.exponential_schedule(1.0, 0.5), [0, 1, 3]) == pytest.approx([1, 0.5, 0.125])
    assert _values(fl.exponential_schedule(1.0, 0.5, end_value=0.2), [1, 3]) == pytest.approx([0.5, 0.2])
    assert float(fl.constant_schedule(0.3)(torch.tensor(5))) == pytest.approx(0.3)


def test_tensor_steps_give_tensors_without_host_sync():
    s = fl.cosine_schedule(1.0, 4)
    out = s(torch.tensor(2, dtype=torch.int64))
    assert isinstance(out, torch.Tensor) and out.ndim == 0 and float(out) == pytest.approx(0.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        fl.cosine_schedule(1.0, 0)
    with pytest.raises(ValueError, match="increasing"):
        fl.multistep_schedule(1.0, [4, 2])
