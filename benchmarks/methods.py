"""Time per sample of every unlearning preset relative to Finetune, side by side in one process.

Fashion-MNIST (real images), the ``small_cnn`` model (1x28x28), class 1 forgotten, a pre-built list
of merged batches of 128 forget + 128 retain images (the same for every method). Each repeat runs
``--steps`` steps of every method in turn (after a warm-up), so machine noise hits all alike; the
figure is the median over repeats of the time per step.

*Samples processed* per step = the forget and retain images the step's objectives read: 128 for
Finetune, L1Sparse, NegGrad and BoundaryShrink (one split), 256 for the methods that read both splits
(NegGrad+, RandomLabel, SalUn, UAM, BadTeacher, SCRUB in its first ``msteps`` epochs). SCRUB is
timed in both phases: "max+min" (a max-step on forget and a min-step on retain, two optimizer
updates) and "min" (the later epochs, retain only). Time per sample = time per step / samples, and
the ratio divides it by Finetune's. SalUn's one-off saliency pass is not part of a step.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/methods.py [--repeats 9] [--steps 4] [--standard-layout]

The model runs in channels-last layout (``fl.functional(..., channels_last=True)``), the faster one
for convolutions on CPU; ``--standard-layout`` measures the default NCHW layout instead.

Targets (issue #5): every method <= 1.15x Finetune per sample, except UAM (two gradient
evaluations) <= 2.2x and the teacher methods (SCRUB, BadTeacher) <= 1.5x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

import funlearn as fl

FORGET_CLASS = 1

Build = Callable[[fl.FunctionalModel, dict, dict, list], fl.Method]


def presets(steps_per_epoch: int) -> dict[str, tuple[Build, int, float]]:
    """name -> (builder, splits read per step, target ratio)."""
    return {
        "finetune": (lambda m, p, b, f: fl.finetune(m), 1, 1.0),
        "neggrad": (lambda m, p, b, f: fl.neggrad(m), 1, 1.15),
        "neggrad_plus": (lambda m, p, b, f: fl.neggrad_plus(m), 2, 1.15),
        "random_label": (lambda m, p, b, f: fl.random_label(m, 10), 2, 1.15),
        "l1_sparse": (lambda m, p, b, f: fl.l1_sparse(m, total_steps=1000), 1, 1.15),
        "salun": (lambda m, p, b, f: fl.salun(m, p, b, f, 10), 2, 1.15),
        "boundary_shrink (fgsm)": (lambda m, p, b, f: fl.boundary_shrink(m), 1, 1.15),
        "boundary_shrink (runner_up)": (lambda m, p, b, f: fl.boundary_shrink(m, labels="runner_up"), 1, 1.15),
        "uam": (lambda m, p, b, f: fl.uam(m), 2, 2.2),
        "bad_teacher": (lambda m, p, b, f: fl.bad_teacher(m), 2, 1.5),
        "scrub (max+min)": (lambda m, p, b, f: fl.scrub(m, steps_per_epoch, msteps=10**6), 2, 1.5),
        "scrub (min)": (lambda m, p, b, f: fl.scrub(m, steps_per_epoch, msteps=0), 1, 1.5),
    }


def make_stepper(method: fl.Method, params, buffers, batches):
    carry = [params, buffers, method.init(params, buffers)]
    count = [0]

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            i = count[0]
            p, b, s, _ = method.step(*carry, batches[i % len(batches)], fl.random.key(0, i))
            carry[:] = [p, b, s]
            count[0] += 1
        return (time.perf_counter() - start) / n

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--standard-layout", action="store_true",
                        help="run in the standard NCHW layout instead of channels-last (the faster on CPU)")
    args = parser.parse_args()

    bundle = fl.load_dataset("fashion_mnist")
    split = fl.classwise_split(bundle.train_y, FORGET_CLASS)
    forget = fl.TensorLoader(bundle.train_x, bundle.train_y, args.batch, seed=1, indices=split.forget)
    retain = fl.TensorLoader(bundle.train_x, bundle.train_y, args.batch, seed=2, indices=split.retain)
    batches = list(fl.merged_batches(forget, retain, epoch_length=8))
    net = fl.create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, seed=0)
    model, params, buffers = fl.functional(net, mean=bundle.mean, std=bundle.std,
                                           channels_last=not args.standard_layout)
    forget_eval = list(fl.TensorLoader(bundle.train_x, bundle.train_y, 512, shuffle=False, indices=split.forget))

    table = presets(len(retain))
    steppers = {}
    for name, (build, splits, _) in table.items():
        steppers[name] = make_stepper(build(model, params, buffers, forget_eval), params, buffers, batches)
        steppers[name](2)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in table}
    for _ in tqdm(range(args.repeats), desc="repeats", disable=args.no_progress):
        for name, stepper in steppers.items():
            times[name].append(stepper(args.steps))

    layout = "standard NCHW" if args.standard_layout else "channels-last"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, small_cnn ({layout}) on Fashion-MNIST 1x28x28, "
          f"{args.batch} forget + {args.batch} retain images per batch, median of {args.repeats} x {args.steps} steps")
    base = statistics.median(times["finetune"]) / args.batch
    print(f"{'method':30s} {'ms/step':>8s} {'samples':>8s} {'us/sample':>10s} {'ratio':>6s} {'target':>7s}")
    met = True
    for name, (_, splits, target) in table.items():
        step = statistics.median(times[name])
        samples = splits * args.batch
        ratio = step / samples / base
        ok = ratio <= target
        met &= ok
        print(f"{name:30s} {step * 1e3:8.2f} {samples:8d} {step / samples * 1e6:10.1f} {ratio:6.2f} "
              f"{'<=' + format(target, '.2f'):>7s}{'' if ok else '  over'}")
    print("targets met" if met else "targets NOT met")


if __name__ == "__main__":
    main()
