"""The compile policy, and a compiled step that agrees with the eager one (CPU, tiny MLP)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import funlearn as fl
from funlearn.engine.compile import should_compile


def test_policy():
    assert should_compile("auto", torch.device("cuda")) and not should_compile("auto", torch.device("cpu"))
    assert should_compile(True, torch.device("cpu")) and not should_compile(False, torch.device("cuda"))
    assert fl.compile_step(print, "auto", "cpu") is print
    with pytest.raises(ValueError, match="compile must be"):
        should_compile("always", torch.device("cpu"))


@pytest.mark.slow
def test_compiled_run_agrees_with_eager():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model, params, buffers = fl.functional(net)

    def objective(p, b, batch, key):
        x, y = batch
        logits, b = model.apply(p, b, x, train=True)
        noise = 0.01 * torch.randn(x.shape[0], generator=key)  # the step key is used inside
        return fl.cross_entropy(logits, y) + noise.mean(), (b, {"acc": fl.accuracy(logits, y)})

    method = fl.gradient_method(objective, fl.sgd(0.1, momentum=0.9))
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(4)]
    eager = fl.run(method, params, buffers, data, epochs=2, compile=False, progress=False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = fl.run(method, params, buffers, data, epochs=2, compile=True, progress=False)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # dynamo did compile (with graph breaks)
    for k in params:
        torch.testing.assert_close(compiled.params[k], eager.params[k], rtol=1e-4, atol=1e-5)
    for k in buffers:
        torch.testing.assert_close(compiled.buffers[k], eager.buffers[k], rtol=1e-4, atol=1e-5)
    eager_losses = eager.history.column("loss", table="steps")
    assert compiled.history.column("loss", table="steps") == pytest.approx(eager_losses, rel=1e-4)
    assert not all(torch.equal(eager.params[k], params[k]) for k in params)
