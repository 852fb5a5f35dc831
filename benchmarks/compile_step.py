"""One training step of ResNet-18 (CIFAR variant), eager vs ``torch.compile``d, side by side.

The step is the engine's: ``gradient_method(cross-entropy, sgd(0.1, momentum=0.9, wd=5e-4))`` on
a batch of 3x32x32 images, compiled with :func:`funlearn.compile_step` (``compile=True``), which
is what ``run(..., compile="auto")`` does on CUDA. The compiled step is warmed up first (its
compile time is printed), then eager and compiled alternate in each repeat; the figures are the
medians (CUDA is synchronised around each timed block). On a machine without CUDA the same script
runs on the CPU with a small CNN and a small batch, so it can be checked anywhere.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compile_step.py [--batch 128] [--repeats 10] [--steps 20]
    python benchmarks/compile_step.py --device cpu --model resnet18 --batch 16   # force a setting
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import funlearn as fl
from funlearn.models import create_model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, carry, batch, key, steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        carry[:] = step(*carry, batch, key)[:3]
    synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=None, help="default: resnet18 on CUDA, small_cnn on CPU")
    parser.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 32 on CPU")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="steps per timed block (default 20 CUDA, 5 CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name = args.model or ("resnet18" if cuda else "small_cnn")
    batch_size = args.batch or (128 if cuda else 32)
    steps = args.steps or (20 if cuda else 5)

    net = create_model(name, num_classes=10, in_channels=3, image_size=32, seed=0).to(device)
    model, params, buffers = fl.functional(net)

    def objective(p, b, batch, key):
        logits, b = model.apply(p, b, batch[0], train=True)
        return fl.cross_entropy(logits, batch[1]), (b, {})

    method = fl.gradient_method(objective, fl.sgd(0.1, momentum=0.9, weight_decay=5e-4))
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(batch_size, 3, 32, 32, generator=g).to(device),
             torch.randint(0, 10, (batch_size,), generator=g).to(device))
    key = fl.random.key(0, 0, device=device)
    steps_fn = {"eager": method.step, "compiled": fl.compile_step(method.step, True, device)}
    carries = {k: [params, buffers, method.init(params, buffers)] for k in steps_fn}

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device) if cuda else 'CPU'}, "
          f"{name}, batch {batch_size}x3x32x32")
    start = time.perf_counter()
    timed(steps_fn["compiled"], carries["compiled"], batch, key, 2, device)
    print(f"compile + first 2 steps: {time.perf_counter() - start:.1f} s")
    timed(steps_fn["eager"], carries["eager"], batch, key, 2, device)
    diff = max(float((carries["eager"][0][k] - carries["compiled"][0][k]).abs().max()) for k in params)
    print(f"max |eager - compiled| parameter difference after 2 steps: {diff:.1e}")
    times: dict[str, list[float]] = {k: [] for k in steps_fn}
    for _ in range(args.repeats):
        for k, step in steps_fn.items():
            times[k].append(timed(step, carries[k], batch, key, steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"eager {med['eager'] * 1e3:8.2f} ms/step   compiled {med['compiled'] * 1e3:8.2f} ms/step   "
          f"speed-up eager/compiled {med['eager'] / med['compiled']:.2f}x")


if __name__ == "__main__":
    main()
