"""Per-sample gradients, norms and sums of squares against a plain per-sample loop on the module."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import make_cnn
from torch import nn

from funlearn import functional
from funlearn.second_order import (
    LayerwiseEngine,
    per_sample_grad_norms,
    per_sample_grads,
    sample_loss,
    squared_grad_sum,
)
from funlearn.second_order.layerwise import _Conv2dRule


def with_running_stats(net: nn.Module, seed: int = 3) -> nn.Module:
    """BatchNorm running statistics far from (0, 1), so eval mode really differs from identity."""
    g = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(32, 1, 28, 28, generator=g) * 3 + 1)
    return net.eval()


def loop_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss=F.cross_entropy) -> dict:
    """The reference: one autograd call per sample on the plain module in eval mode."""
    net = copy.deepcopy(net).eval()
    named = list(net.named_parameters())
    rows = [torch.autograd.grad(loss(net(x[i : i + 1]), y[i : i + 1]), [p for _, p in named], allow_unused=True)
            for i in range(len(x))]  # fmt: skip
    return {k: torch.stack([torch.zeros_like(p) if r[j] is None else r[j] for r in rows]) for j, (k, p) in enumerate(named)}


def rel_err(a: dict, b: dict) -> float:
    """Largest per-tensor relative error, relative to the whole reference's norm."""
    scale = torch.sqrt(sum(v.double().square().sum() for v in b.values()))
    return max(float((a[k].double() - b[k].double()).norm() / scale) for k in b)


def custom_net() -> nn.Module:
    """Reflect padding, dilation, groups, a 3-D LayerNorm/Linear and a layer without a closed form."""

    class Scale(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.s = nn.Parameter(torch.linspace(0.5, 1.5, c))

        def forward(self, x):
            return x * self.s.view(1, -1, 1, 1)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), Scale(4), nn.ReLU(),
            nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2, stride=2), nn.GroupNorm(2, 8), nn.Tanh(),
            nn.Flatten(2), nn.LayerNorm(196), nn.Linear(196, 5), nn.Flatten(1), nn.Linear(40, 10),
        )  # fmt: skip


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_per_sample_grads_equal_a_per_sample_loop(norm, batch):
    x, y = batch
    net = with_running_stats(make_cnn(norm=norm))
    model, params, buffers = functional(net)
    ref = loop_grads(net, x, y)
    loss_fn = sample_loss(model, buffers)
    for strategy in ("layerwise", "vmap", "loop", "auto"):
        got = per_sample_grads(loss_fn, params, (x, y), strategy=strategy)
        assert list(got) == list(params) and got["9.weight"].shape == (16, 10, 64)
        assert rel_err(got, ref) <= 1e-5, strategy


@pytest.mark.parametrize("algorithm", ["unfold", "expanded"])
def test_layerwise_matches_loop_in_float64_on_unusual_layers(algorithm, batch):
    x, y = batch
    net = custom_net().double()
    x = x[:6].double()
    model, params, buffers = functional(net)
    engine = LayerwiseEngine(model, conv_algorithm=algorithm)
    assert engine.supported
    got = engine.grads(params, buffers, x, sample_loss(model, buffers).cotangent(y[:6]))
    assert rel_err(got, loop_grads(net, x, y[:6])) <= 1e-12


def test_chunked_equals_unchunked(batch):
    x, y = batch
    net = with_running_stats(make_cnn()).double()
    model, params, buffers = functional(net)
    loss_fn = sample_loss(model, buffers)
    x = x.double()
    for strategy in ("layerwise", "vmap"):
        full = per_sample_grads(loss_fn, params, (x, y), strategy=strategy)
        chunked = per_sample_grads(loss_fn, params, (x, y), strategy=strategy, chunk_size=5)
        assert rel_err(chunked, full) <= 1e-13


def test_norms_and_sum_of_squares_equal_the_loop(batch):
    x, y = batch
    net = with_running_stats(make_cnn()).double()
    x = x.double()
    model, params, buffers = functional(net)
    ref = loop_grads(net, x, y)
    ref_norms = torch.stack([v.flatten(1).square().sum(1) for v in ref.values()]).sum(0).sqrt()
    ref_squares = {k: v.square().sum(0) for k, v in ref.items()}
    loss_fn = sample_loss(model, buffers)
    for strategy in ("layerwise", "vmap", "loop"):
        norms = per_sample_grad_norms(loss_fn, params, (x, y), strategy=strategy, chunk_size=6)
        assert torch.allclose(norms, ref_norms, rtol=1e-10), strategy
        squares = squared_grad_sum(loss_fn, params, (x, y), strategy=strategy, chunk_size=7)
        assert rel_err(squares, ref_squares) <= 1e-12, strategy


def test_a_custom_per_sample_loss_and_a_plain_function(batch):
    x, y = batch
    net = make_cnn(norm="group").double()
    x = x.double()
    model, params, buffers = functional(net)
    target = F.one_hot(y, 10).double()

    def squared_error(logits, labels):
        return (logits - F.one_hot(labels, 10).to(logits.dtype)).square().sum(-1)

    ref = loop_grads(net, x, target, loss=lambda out, t: (out - t).square().sum())
    got = per_sample_grads(sample_loss(model, buffers, squared_error), params, (x, y), strategy="layerwise")
    assert rel_err(got, ref) <= 1e-12

    def plain(p, xi, ti):  # any function of one sample works with vmap
        return (model.logits(p, buffers, xi[None])[0] - ti).square().sum()

    assert rel_err(per_sample_grads(plain, params, (x, target)), ref) <= 1e-12


def test_auto_falls_back_to_vmap_when_the_structure_does_not_fit(batch):
    x, y = batch

    class Tied(nn.Module):  # the head reuses the embedding's weight outside its module
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(10, 784)
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            h = self.conv(x).flatten(1)[:, :784]
            return F.linear(h, self.inp.weight.T)

    class Shared(nn.Module):  # one module called twice
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(10, 10)
            self.head = nn.Linear(784, 10)

        def forward(self, x):
            return self.lin(torch.tanh(self.lin(self.head(x.flatten(1)))))

    for cls in (Tied, Shared):
        torch.manual_seed(0)
        net = cls().double()
        model, params, buffers = functional(net)
        loss_fn = sample_loss(model, buffers)
        with pytest.warns(UserWarning, match="using vmap"):
            got = per_sample_grads(loss_fn, params, (x[:5].double(), y[:5]))
        assert rel_err(got, loop_grads(net, x[:5].double(), y[:5])) <= 1e-12
        with pytest.raises(ValueError, match="cannot handle"):
            per_sample_grads(loss_fn, params, (x[:5].double(), y[:5]), strategy="layerwise")


def test_inputs_are_not_modified_and_bad_input_is_rejected(batch):
    x, y = batch
    net = make_cnn()
    model, params, buffers = functional(net)
    before = {k: v.clone() for k, v in params.items()}
    loss_fn = sample_loss(model, buffers)
    per_sample_grads(loss_fn, params, (x, y))
    assert all(torch.equal(params[k], before[k]) and not params[k].requires_grad for k in params)
    with pytest.raises(ValueError, match="strategy must be one of"):
        per_sample_grads(loss_fn, params, (x, y), strategy="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        per_sample_grads(loss_fn, params, (x, y), chunk_size=0)
    with pytest.raises(ValueError, match="tuple of tensors"):
        per_sample_grads(loss_fn, params, x)
    with pytest.raises(ValueError, match="first .batch. dimension"):
        per_sample_grads(loss_fn, params, (x, y[:3]))
    with pytest.raises(ValueError, match="needs loss_fn = sample_loss"):
        per_sample_grads(lambda p, a, b: p["9.bias"].sum(), params, (x, y), strategy="layerwise")
    with pytest.raises(ValueError, match="per-sample values"):
        per_sample_grads(sample_loss(model, buffers, lambda z, t: F.cross_entropy(z, t)), params, (x, y),
                         strategy="layerwise")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the supported model takes the layer-wise path silently
        per_sample_grad_norms(loss_fn, params, (x, y))


@pytest.mark.parametrize(
    "kernel, stride, dilation, padding, groups",
    [((3, 2), (2, 1), (1, 2), (2, 1), 1), (3, 1, 2, 1, 2), ((1, 3), 2, 1, 0, 4), (5, (1, 3), 1, 2, 1)],
)
def test_layerwise_unfold_equals_torch_unfold(kernel, stride, dilation, padding, groups):
    """The strided-window unfold equals ``F.unfold`` (per group), on a channels-last input too."""
    conv = nn.Conv2d(4, 8, kernel, stride=stride, dilation=dilation, padding=padding, groups=groups)
    a = torch.randn(3, 4, 11, 9).contiguous(memory_format=torch.channels_last)
    ref = F.unfold(a, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    got = _Conv2dRule("unfold")._unfold(conv, a)
    assert torch.equal(got, ref.reshape(3, groups, -1, ref.shape[-1]))
