import copy

import pytest
import torch
from torch import nn

from conftest import make_cnn
from funlearn import functional, load_into_module, random_init, value_and_grad


def test_apply_equals_module_forward_in_eval_and_train(batch):
    x, _ = batch
    net = make_cnn()
    model, params, buffers = functional(net)
    ref = copy.deepcopy(net)
    ref.eval()
    out, same = model.apply(params, buffers, x)
    assert torch.allclose(out, ref(x), atol=1e-6) and same is buffers
    ref.train()
    expected = ref(x)
    out, new_buffers = model.apply(params, buffers, x, train=True)
    assert torch.allclose(out, expected, atol=1e-6)
    for name, buf in ref.named_buffers():  # running stats updated exactly as the module does
        assert torch.allclose(new_buffers[name].float(), buf.float(), atol=1e-7), name


def test_train_mode_leaves_given_buffers_and_user_module_untouched(batch):
    x, _ = batch
    net = make_cnn()
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model, params, buffers = functional(net)
    given = {k: v.clone() for k, v in buffers.items()}
    _, new_buffers = model.apply(params, buffers, x, train=True)
    assert all(torch.equal(buffers[k], given[k]) for k in given)
    assert not torch.equal(new_buffers["1.running_mean"], given["1.running_mean"])
    assert int(new_buffers["1.num_batches_tracked"]) == 1
    assert not net.training  # never flipped
    assert all(torch.equal(net.state_dict()[k], before[k]) for k in before)


def test_extracted_params_are_detached_copies():
    net = make_cnn()
    _, params, _ = functional(net)
    params["9.weight"].add_(1.0)
    assert not torch.equal(params["9.weight"], net[9].weight)
    assert not params["9.weight"].requires_grad


def test_normalisation_inside_the_model(batch):
    x, _ = batch
    net = make_cnn()
    model, params, buffers = functional(net, mean=[0.3], std=[0.2])
    net.eval()
    assert torch.allclose(model.logits(params, buffers, x), net((x - 0.3) / 0.2), atol=1e-6)
    with pytest.raises(ValueError, match="std must be positive"):
        functional(net, mean=[0.0], std=[0.0])
    with pytest.raises(ValueError, match="both mean and std"):
        functional(net, mean=[0.0])


def test_grad_through_train_mode_returns_buffers_as_aux(batch):
    x, y = batch
    net = make_cnn()
    model, params, buffers = functional(net)

    def loss(p):
        logits, nb = model.apply(p, buffers, x, train=True)
        return nn.functional.cross_entropy(logits, y), nb

    grads, nb = torch.func.grad(loss, has_aux=True)(params)
    ref = copy.deepcopy(net)
    ref.train()
    nn.functional.cross_entropy(ref(x), y).backward()
    for name, p in ref.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-6), name
    assert torch.allclose(nb["1.running_var"], ref[1].running_var)


def test_load_into_module_writes_back_and_checks_keys():
    net = make_cnn()
    model, params, buffers = functional(net)
    params = {k: v + 1 for k, v in params.items()}
    target = make_cnn(seed=5)
    load_into_module(target, params, buffers)
    assert torch.equal(target[0].weight, params["0.weight"])
    with pytest.raises(ValueError, match="missing"):
        load_into_module(target, {k: v for k, v in params.items() if k != "9.bias"})
    bad = dict(params)
    bad["9.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match="wrong shapes"):
        load_into_module(target, bad)


def test_random_init_is_seeded_fresh_and_leaves_the_global_rng_alone():
    model, params, buffers = functional(make_cnn())
    state = torch.get_rng_state()
    a_params, a_buffers = random_init(model, 1)
    b_params, _ = random_init(model, 1)
    c_params, _ = random_init(model, 2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a_params[k], b_params[k]) for k in a_params)
    assert not torch.equal(a_params["0.weight"], c_params["0.weight"])
    assert not torch.equal(a_params["0.weight"], params["0.weight"])
    assert torch.equal(a_buffers["1.running_var"], torch.ones(8))  # fresh BatchNorm statistics
    assert set(a_params) == set(params) and set(a_buffers) == set(buffers)


def test_random_init_refuses_parameters_it_cannot_reset():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    with pytest.raises(ValueError, match="scale"):
        random_init(functional(Scaled())[0], 0)


def test_channels_last_gives_the_same_logits_gradients_and_buffers(batch):
    x, y = batch
    net = make_cnn()
    model, params, buffers = functional(net)
    cl_model, cl_params, cl_buffers = functional(net, channels_last=True)
    assert cl_params["0.weight"].is_contiguous(memory_format=torch.channels_last)

    def loss(m, p, b):
        logits, nb = m.apply(p, b, x, train=True)
        return nn.functional.cross_entropy(logits, y), nb

    (l0, b0), g0 = value_and_grad(lambda p: loss(model, p, buffers), has_aux=True)(params)
    (l1, b1), g1 = value_and_grad(lambda p: loss(cl_model, p, cl_buffers), has_aux=True)(cl_params)
    assert torch.allclose(l0, l1, atol=1e-6)
    assert all(torch.allclose(g0[k], g1[k], atol=1e-6) for k in g0)
    assert all(torch.allclose(b0[k].float(), b1[k].float(), atol=1e-6) for k in b0)
    # standard-layout params (e.g. loaded from a file) give the same numbers as channels-last ones
    assert torch.equal(cl_model.logits(params, buffers, x), cl_model.logits(cl_params, buffers, x))
    assert random_init(cl_model, 0)[0]["0.weight"].is_contiguous(memory_format=torch.channels_last)
