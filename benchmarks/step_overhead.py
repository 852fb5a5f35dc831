"""Functional SGD step vs the plain torch.optim loop, side by side in one process.

One full step = forward + gradient + SGD update (momentum 0.9, weight decay 5e-4) on one batch of
128 28x28 single-channel images, for a small CNN and for ResNet-18 (CIFAR variant). The two loops
alternate step by step (ABBA order) so that machine noise hits both alike; the figure is the median.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/step_overhead.py [--repeats 60] [--resnet-repeats 12]

Target (issue #2): functional / plain <= 1.10 for both models.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

import funlearn as fl
from funlearn.models import create_model


def plain_loop(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    net = copy.deepcopy(net).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def functional_loop(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    model, params, buffers = fl.functional(net)

    def objective(p, b, batch, key):
        logits, new_b = model.apply(p, b, batch[0], train=True)
        return nn.functional.cross_entropy(logits, batch[1]), (new_b, {})

    method = fl.gradient_method(objective, fl.sgd(0.01, 0.9, weight_decay=5e-4))
    carry = [params, buffers, method.init(params, buffers)]
    key = torch.Generator().manual_seed(0)

    def step():
        carry[:] = method.step(*carry, (x, y), key)[:3]

    return step


def measure(name: str, net: nn.Module, repeats: int) -> float:
    """Median time per step of each loop; the two alternate step by step, in ABBA order."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)
    loops = {"plain": plain_loop(net, x, y), "functional": functional_loop(net, x, y)}
    for step in loops.values():  # warm-up
        step(), step()
    times: dict[str, list[float]] = {k: [] for k in loops}
    order = list(loops)
    for r in range(repeats):
        for k in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            loops[k]()
            times[k].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["functional"] / med["plain"]
    print(f"{name:10s} plain {med['plain'] * 1e3:8.2f} ms/step   functional {med['functional'] * 1e3:8.2f} ms/step"
          f"   ratio {ratio:.3f}   ({repeats} steps each)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60, help="steps of each loop for the small CNN")
    parser.add_argument("--resnet-repeats", type=int, default=12, help="steps of each loop for ResNet-18")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch 128, 1x28x28")
    ratios = {
        "small_cnn": measure("small_cnn", create_model("small_cnn", num_classes=10, in_channels=1, image_size=28,
                                                       seed=0), args.repeats),
        "resnet18": measure("resnet18", create_model("resnet18", num_classes=10, in_channels=1, seed=0),
                            args.resnet_repeats),
    }
    verdict = all(r <= 1.10 for r in ratios.values())
    print(f"target functional/plain <= 1.10: {'met' if verdict else 'NOT met'}")


if __name__ == "__main__":
    main()
