"""The torchunlearn-compatible layer: its overhead over funlearn's engine, and the UAM perturbation sign.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compat_torchunlearn.py [--train-subset 20000] [--repeats 3]

1. **Overhead.** ``Finetune(rmodel).fit(MergedLoaders(...))`` against the same method written
   directly (``fl.run(fl.gradient_method(fl.retain_ce(model), fl.sgd(...)), ...)``) on the same
   merged batches, records on the same fixed subsets, one process, interleaved, median of
   ``--repeats``. The final parameters must be identical; the ratio is compat / direct.
2. **UAM's sign.** From a LeNet trained on the Fashion-MNIST subset, class-wise forgetting of class 1
   ("Trouser", torchunlearn's ``omit_label=1``): ``Standard`` + ``UAM(rho)`` with the compat default
   (perturb along ``-∇CE_F``, funlearn's) and with ``perturb='forget_ce'`` (torchunlearn's ``+∇CE_F``),
   next to plain ``Finetune``, same optimizer, epochs and data order. Prints RA/FA/TA (%) on the
   evaluation subsets: the default should forget (FA toward 0) where torchunlearn's sign does not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

import torch

import funlearn as fl
from funlearn.compat.data import MergedLoaders, UnlearnDataSetup
from funlearn.compat.robmodel import RobModel, load_model
from funlearn.compat.trainers import Finetune, Standard

MEAN, STD = [0.2860], [0.3530]
OPTIMIZER = "SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)"


def pretrained(setup: UnlearnDataSetup, epochs: int) -> RobModel:
    rmodel = RobModel(load_model("LeNet", 10), 10, {"mean": MEAN, "std": STD})
    train, _ = setup.get_loaders(batch_size=128, train_shuffle_and_transform=True)
    result = fl.train(rmodel.fmodel, rmodel.params, rmodel.buffers, train, epochs=epochs, optimizer=fl.adam(3e-3),
                      progress=False)  # fmt: skip
    rmodel.params, rmodel.buffers = result.params, result.buffers
    return rmodel


def overhead(setup: UnlearnDataSetup, base: RobModel, repeats: int, epochs: int) -> None:
    train, test = setup.get_loaders_for_rand(batch_size=128, ratio=0.1)
    flags = {"(R)": train["Retain"], "(F)": train["Forget"], "(Te)": test["Test"]}

    def compat() -> tuple[float, dict]:
        rmodel = RobModel(load_model("LeNet", 10), 10, {"mean": MEAN, "std": STD})
        rmodel.params, rmodel.buffers = base.params, base.buffers
        trainer = Finetune(rmodel)
        trainer.setup(optimizer=OPTIMIZER)
        trainer.record_rob(flags, n_limit=1000)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit(MergedLoaders(train), n_epochs=epochs)
        return time.perf_counter() - start, rmodel.params

    def direct() -> tuple[float, dict]:
        reference = Finetune(RobModel(load_model("LeNet", 10), 10, {"mean": MEAN, "std": STD}))
        reference.record_rob(flags, n_limit=1000)  # the same fixed subsets
        model = base.fmodel
        method = fl.gradient_method(fl.retain_ce(model), fl.sgd(0.01, 0.9, weight_decay=5e-4))
        start = time.perf_counter()
        result = fl.run(method, base.params, base.buffers, MergedLoaders(train).batches(), epochs=epochs, model=model,
                        eval_loaders=reference.record_loaders, progress=False)  # fmt: skip
        return time.perf_counter() - start, result.params

    times: dict[str, list[float]] = {"compat": [], "direct": []}
    final: dict[str, dict] = {}
    for _ in range(repeats):
        for name, fn in (("compat", compat), ("direct", direct)):
            seconds, final[name] = fn()
            times[name].append(seconds)
    same = all(torch.equal(final["compat"][k], final["direct"][k]) for k in base.params)
    c, d = statistics.median(times["compat"]), statistics.median(times["direct"])
    steps = epochs * len(MergedLoaders(train))
    print(f"overhead: {steps} steps + {epochs} record points; compat {c:.2f} s, direct {d:.2f} s, "
          f"ratio {c / d:.3f} (median of {repeats}); identical final params: {same}")  # fmt: skip


def uam_sign(setup: UnlearnDataSetup, base: RobModel, rho: float, epochs: int) -> None:
    train, test = setup.get_loaders_for_classwise(batch_size=128, omit_label=1, train_shuffle_and_transform=True)
    flags = {"(R)": train["Retain"], "(F)": train["Forget"], "(Te)": test["Test"]}
    rows = []
    for name, trainer_cls, minimizer in (
        ("Finetune", Finetune, None),
        (f"UAM(rho={rho}) compat default (-∇CE_F)", Standard, f"UAM(rho={rho})"),
        (f"UAM(rho={rho}, perturb='forget_ce') (torchunlearn's +∇CE_F)", Standard, f"UAM(rho={rho}, perturb='forget_ce')"),
    ):
        rmodel = RobModel(load_model("LeNet", 10), 10, {"mean": MEAN, "std": STD})
        rmodel.params, rmodel.buffers = base.params, base.buffers
        trainer = trainer_cls(rmodel)
        trainer.setup(optimizer=OPTIMIZER, minimizer=minimizer)
        trainer.record_rob(flags, n_limit=1000)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit(MergedLoaders(train), n_epochs=epochs)
        accuracy = {flag: rmodel.eval_accuracy(loader) for flag, loader in trainer.record_loaders.items()}
        rows.append((name, accuracy["(R)"], accuracy["(F)"], accuracy["(Te)"]))
    original = {flag: base.eval_accuracy(loader) for flag, loader in trainer.record_loaders.items()}
    rows.insert(0, ("original", original["(R)"], original["(F)"], original["(Te)"]))
    width = max(len(r[0]) for r in rows)
    print(f"\nclass-wise forgetting of class 1, {epochs} epochs, {OPTIMIZER}; accuracies on 1000-sample subsets")
    print(f"{'method':<{width}}  {'RA':>6}  {'FA':>6}  {'TA':>6}")
    for name, ra, fa, ta in rows:
        print(f"{name:<{width}}  {ra:6.2f}  {fa:6.2f}  {ta:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-subset", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rho", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    setup = UnlearnDataSetup("FashionMNIST", 10, MEAN, STD, train_subset=args.train_subset, test_subset=5000)
    base = pretrained(setup, epochs=5)
    overhead(setup, base, args.repeats, epochs=2)
    uam_sign(setup, base, args.rho, epochs=2)


if __name__ == "__main__":
    main()
