"""Engine overhead: ``funlearn.run`` vs calling ``method.step`` directly in a Python loop.

Both loops take the same SGD (momentum 0.9) cross-entropy steps over the same pre-built list of
batches. The direct loop does nothing else; the engine also derives each step's key from
``(seed, step)``, checks loss, params and buffers for NaN/inf, reads the metrics (one host sync),
keeps the step records and updates a (disabled) progress bar. The loops alternate within each
repeat and the figures are medians of per-step times.

On a shared machine the noise of a full step (several %) hides the engine's cost, so it is also
measured alone: ``run`` with a no-op method (returns its inputs) on the same params spends its
whole time in the engine's per-step work ("bookkeeping"), reported as a % of the direct step.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/engine_overhead.py [--repeats 7] [--steps 40]

Target (issue #3): a small overhead (a few %) for a real model; the tiny MLP shows the fixed cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import funlearn as fl
from funlearn.models import create_model


def ce_method(model: fl.FunctionalModel) -> fl.Method:
    def objective(params, buffers, batch, key):
        logits, buffers = model.apply(params, buffers, batch[0], train=True)
        return fl.cross_entropy(logits, batch[1]), (buffers, {})

    return fl.gradient_method(objective, fl.sgd(0.01, momentum=0.9))


def direct(method, params, buffers, batches) -> float:
    state, key = method.init(params, buffers), fl.random.key(0, 0)
    start = time.perf_counter()
    for batch in batches:
        params, buffers, state, _ = method.step(params, buffers, state, batch, key)
    return (time.perf_counter() - start) / len(batches)


def engine(method, params, buffers, batches) -> float:
    start = time.perf_counter()
    fl.run(method, params, buffers, batches, epochs=1, progress=False, compile=False)
    return (time.perf_counter() - start) / len(batches)


def noop_method() -> fl.Method:
    loss = torch.zeros(())
    return fl.Method(lambda params, buffers: (), lambda params, buffers, state, batch, key: (params, buffers, state,
                                                                                            {"loss": loss}))


def measure(name: str, net: torch.nn.Module, shape: tuple[int, ...], batch: int, steps: int, repeats: int) -> None:
    model, params, buffers = fl.functional(net)
    method = ce_method(model)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(batch, *shape, generator=g), torch.randint(0, 10, (batch,), generator=g))
               for _ in range(steps)]
    loops = {"direct": direct, "engine": engine}
    for loop in loops.values():  # warm-up
        loop(method, params, buffers, batches[:3])
    times: dict[str, list[float]] = {k: [] for k in loops}
    times["bookkeeping"] = []
    for _ in range(repeats):
        for k, loop in loops.items():
            times[k].append(loop(method, params, buffers, batches))
        times["bookkeeping"].append(engine(noop_method(), params, buffers, batches))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name:28s} direct {med['direct'] * 1e3:8.3f} ms/step   engine {med['engine'] * 1e3:8.3f} ms/step "
          f"({100 * (med['engine'] / med['direct'] - 1):+5.1f}%)   bookkeeping {med['bookkeeping'] * 1e3:6.3f} ms/step "
          f"= {100 * med['bookkeeping'] / med['direct']:.2f}% of a step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU")
    mlp = create_model("mlp", num_classes=10, in_channels=1, image_size=8, hidden_sizes=(32,), seed=0)
    measure("mlp 64-32-10, batch 64", mlp, (1, 8, 8), 64, args.steps * 4, args.repeats)
    cnn = create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, seed=0)
    measure("small_cnn, batch 128 28x28", cnn, (1, 28, 28), 128, args.steps, args.repeats)
    resnet = create_model("resnet18", num_classes=10, in_channels=3, seed=0)
    measure("resnet18, batch 32 3x32x32", resnet, (3, 32, 32), 32, max(4, args.steps // 8), max(3, args.repeats // 2))


if __name__ == "__main__":
    main()
