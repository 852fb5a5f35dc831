"""Compat trainers: each step equals the hand-written update, every trainer takes UAM, and fit's records,
best selection and files behave as documented."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import funlearn as fl
from funlearn.compat.data import MergedLoaders
from funlearn.compat.records import best_criterion
from funlearn.compat.robmodel import RobModel
from funlearn.compat.trainers import (
    SCRUB,
    BadTeacher,
    BoundaryShrink,
    Finetune,
    L1Sparse,
    NegGrad,
    RandomLabel,
    SalUn,
    Standard,
)

from compat_common import pretrained, setup


def _linear(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Linear(4, 3)


def _data(n: int, seed: int, batch_size: int) -> fl.TensorLoader:
    g = torch.Generator().manual_seed(seed)
    return fl.TensorLoader(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g), batch_size,
                           shuffle=False)  # fmt: skip


def _grad(module: nn.Module, loss_fn) -> list[torch.Tensor]:
    module.zero_grad()
    loss_fn(module).backward()
    return [p.grad.clone() for p in module.parameters()]


def _assert_params(rmodel: RobModel, module: nn.Module) -> None:
    torch.testing.assert_close(rmodel.params["weight"], module.weight.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rmodel.params["bias"], module.bias.detach(), rtol=1e-5, atol=1e-6)


def test_finetune_equals_torch_sgd_on_the_retain_loader():
    retain = _data(24, seed=1, batch_size=8)
    rmodel = RobModel(_linear(), 3)
    trainer = Finetune(rmodel)
    trainer.setup(optimizer="SGD(lr=0.1, momentum=0.9, weight_decay=5e-4)", scheduler="Step(milestones=[1], gamma=0.1)")
    trainer.fit(retain, n_epochs=2, record_type=None)  # a plain Retain loader, as in torchunlearn's README

    module = _linear()
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(opt, [1], 0.1)
    for _ in range(2):
        for x, y in retain:
            opt.zero_grad()
            F.cross_entropy(module(x), y).backward()
            opt.step()
        scheduler.step()
    _assert_params(rmodel, module)


@pytest.mark.parametrize("perturb, sign", [("unlearn", -1.0), ("forget_ce", 1.0)])
def test_uam_step_is_the_formula(perturb, sign):
    """θ' = θ - lr ∇CE_R(θ + ρ g/‖g‖) with g = ∇(sign · CE_F)(θ): funlearn's -∇CE_F by default, torchunlearn's +∇CE_F."""
    retain, forget = _data(8, seed=1, batch_size=8), _data(5, seed=2, batch_size=5)
    rmodel, rho, lr = RobModel(_linear(), 3), 0.5, 0.1
    trainer = Standard(rmodel)
    trainer.setup(optimizer=f"SGD(lr={lr})", minimizer=f"UAM(rho={rho}, perturb='{perturb}')")
    trainer.fit(MergedLoaders({"Retain": retain, "Forget": forget}), n_epochs=1, record_type=None)

    module = _linear()
    (xr, yr), (xf, yf) = next(iter(retain)), next(iter(forget))
    g = _grad(module, lambda m: sign * F.cross_entropy(m(xf), yf))
    norm = torch.sqrt(sum(t.square().sum() for t in g))
    perturbed = copy.deepcopy(module)
    with torch.no_grad():
        for p, gi in zip(perturbed.parameters(), g):
            p.add_(rho * gi / norm)
    h = _grad(perturbed, lambda m: F.cross_entropy(m(xr), yr))
    with torch.no_grad():
        for p, hi in zip(module.parameters(), h):
            p.sub_(lr * hi)
    _assert_params(rmodel, module)


def test_sam_on_neggrad_is_the_formula():
    """NegGrad(retain_lambda=0.5) under SAM: L = 0.5 (-min(CE_F, 5)) + 0.5 CE_R, g = ∇L(θ), θ' = θ - lr ∇L(θ + ρ g/‖g‖)."""
    retain, forget = _data(8, seed=3, batch_size=8), _data(6, seed=4, batch_size=6)
    rmodel, rho, lr = RobModel(_linear(), 3), 0.2, 0.05
    trainer = NegGrad(rmodel, retain_lambda=0.5)
    trainer.setup(optimizer=f"SGD(lr={lr})", minimizer=f"SAM(rho={rho})")
    trainer.fit({"Retain": retain, "Forget": forget}, n_epochs=1, record_type=None)  # a plain dict is merged

    (xr, yr), (xf, yf) = next(iter(retain)), next(iter(forget))

    def loss(m):
        return 0.5 * -torch.clamp(F.cross_entropy(m(xf), yf), max=5.0) + 0.5 * F.cross_entropy(m(xr), yr)

    module = _linear()
    g = _grad(module, loss)
    norm = torch.sqrt(sum(t.square().sum() for t in g))
    perturbed = copy.deepcopy(module)
    with torch.no_grad():
        for p, gi in zip(perturbed.parameters(), g):
            p.add_(rho * gi / norm)
    h = _grad(perturbed, loss)
    with torch.no_grad():
        for p, hi in zip(module.parameters(), h):
            p.sub_(lr * hi)
    _assert_params(rmodel, module)


def test_neggrad_ceiling_stops_the_ascent():
    retain, forget = _data(8, seed=1, batch_size=8), _data(8, seed=2, batch_size=8)
    module = _linear()
    x, y = next(iter(forget))
    with torch.no_grad():
        module.weight.mul_(40.0)  # confidently wrong somewhere: forget CE far above 5
        assert float(F.cross_entropy(module(x), y)) > 5.0
    for ceiling, moves in ((5.0, False), (None, True)):
        rmodel = RobModel(copy.deepcopy(module), 3)
        trainer = NegGrad(rmodel, ceiling=ceiling)
        trainer.setup(optimizer="SGD(lr=0.1)")
        trainer.fit(MergedLoaders({"Retain": retain, "Forget": forget}), n_epochs=1, record_type=None)
        changed = not torch.equal(rmodel.params["weight"], module.weight.detach())
        assert changed == moves


def test_salun_mask_holds_under_uam_weight_decay_and_momentum():
    retain, forget = _data(16, seed=1, batch_size=8), _data(8, seed=2, batch_size=4)
    for enforce_frozen in (True, False):
        rmodel = RobModel(_linear(), 3)
        start = dict(rmodel.params)
        trainer = SalUn(rmodel, saliency_threshold=0.4, enforce_frozen=enforce_frozen)
        mask = trainer.compute_saliency_mask(forget)
        assert sum(int(m.sum()) for m in mask.values()) == int(0.4 * 15)  # exactly int(fraction * N) by rank
        trainer.setup(optimizer="SGD(lr=0.1, momentum=0.9, weight_decay=0.1)", minimizer="UAM(rho=0.3)")
        trainer.fit(MergedLoaders({"Retain": retain, "Forget": forget}), n_epochs=2, record_type=None)
        for k, m in mask.items():
            frozen_equal = torch.equal(rmodel.params[k][~m], start[k][~m])
            assert frozen_equal == enforce_frozen  # weight decay still moves them with enforce_frozen=False
            assert not torch.equal(rmodel.params[k][m], start[k][m])


def _cnn(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize("trainer_cls, kwargs", [
    (Finetune, {}), (Standard, {}), (NegGrad, {"retain_lambda": 0.5, "l1_penalty_lambda": 1e-4}),
    (RandomLabel, {"retain_lambda": 0.5}), (L1Sparse, {"gamma": 1e-4}), (SCRUB, {"msteps": 1}),
    (BadTeacher, {}), (BoundaryShrink, {"eps": 0.05}), (BoundaryShrink, {"labels": "runner_up"}), (SalUn, {}),
])  # fmt: skip
@pytest.mark.parametrize("minimizer", [None, "UAM(rho=0.2, cosine_total_step=6)", "SAM(rho=0.05)"])
def test_every_trainer_runs_with_every_minimizer(trainer_cls, kwargs, minimizer):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(36, 1, 8, 8, generator=g), torch.randint(0, 3, (36,), generator=g)
    loaders = {"Retain": fl.TensorLoader(x[:24], y[:24], 8, shuffle=True, seed=1),
               "Forget": fl.TensorLoader(x[24:], y[24:], 8, shuffle=True, seed=2)}  # fmt: skip
    rmodel = RobModel(_cnn(), 3, {"mean": [0.5], "std": [0.25]})
    start = dict(rmodel.params)
    trainer = trainer_cls(rmodel, **kwargs)
    trainer.setup(optimizer="SGD(lr=0.05, momentum=0.9, weight_decay=5e-4)", minimizer=minimizer, clip_grad_norm=5.0)
    result = trainer.fit(MergedLoaders(loaders), n_epochs=2, record_type=None)
    assert result.completed and result.counters.step == 6
    assert fl.tree.all_finite(rmodel.params) and not torch.equal(rmodel.params["4.weight"], start["4.weight"])
    if trainer_cls is SCRUB:  # max-steps in the first msteps=1 epoch only (torchunlearn never alternated, T1)
        assert [row["max_step"] for row in result.history.steps] == [1.0] * 3 + [0.0] * 3


def test_retain_only_trainers_accept_a_plain_loader_others_do_not():
    retain, forget = _data(16, seed=1, batch_size=8), _data(8, seed=2, batch_size=4)
    trainer = NegGrad(RobModel(_linear(), 3))
    trainer.setup(optimizer="SGD(lr=0.1)")
    with pytest.raises(ValueError, match="NegGrad reads the Forget split: pass MergedLoaders"):
        trainer.fit(retain, n_epochs=1)
    trainer = Standard(RobModel(_linear(), 3))
    trainer.setup(optimizer="SGD(lr=0.1)", minimizer="UAM(rho=0.1)")
    with pytest.raises(ValueError, match="the UAM minimizer reads the Forget split"):
        trainer.fit(retain, n_epochs=1)
    with pytest.raises(RuntimeError, match="call setup"):
        Finetune(RobModel(_linear(), 3)).fit(retain, n_epochs=1)
    with pytest.raises(ValueError, match="save_best needs records"):
        trainer.fit(MergedLoaders({"Retain": retain, "Forget": forget}), 1, record_type=None, save_best={"Cost": "LB"})
    with pytest.raises(ValueError, match=r"save_best key 'Clean\(X\)' is not recorded"):
        trainer.fit(MergedLoaders({"Retain": retain, "Forget": forget}), 1, save_best={"Clean(X)": "HB"})
    with pytest.raises(ValueError, match="adversarial/gradient records"):
        trainer.record_rob({"(R)": retain}, eps=8 / 255)
    with pytest.raises(TypeError, match="RobModel"):
        Finetune(_linear())


def test_save_best_codes_become_a_lexicographic_criterion():
    flags = ["(R)", "(F)", "(Te)"]
    criterion = best_criterion({"Clean(F)": "LBO", "Clean(R)": "HB", "Clean(Te)": "HB"}, flags)
    assert list(criterion.items()) == [("acc/(R)", "max"), ("acc/(Te)", "max"), ("acc/(F)", "min")]
    records = [{"acc/(R)": 90.0, "acc/(Te)": 80.0, "acc/(F)": 50.0},
               {"acc/(R)": 99.0, "acc/(Te)": 79.0, "acc/(F)": 60.0},  # torchunlearn's Pareto test rejects this
               {"acc/(R)": 99.0, "acc/(Te)": 79.0, "acc/(F)": 40.0},  # a tie-break win
               {"acc/(R)": 99.0, "acc/(Te)": 79.0, "acc/(F)": float("nan")}]  # fmt: skip
    assert fl.select_best(records, criterion) == 2
    with pytest.raises(ValueError, match="use 'HB', 'LB'"):
        best_criterion({"Clean(R)": "high"}, flags)


def test_fit_prints_the_table_keeps_the_best_and_writes_weights_only_files(tmp_path, capsys):
    data = setup()
    train, test = data.get_loaders_for_classwise(batch_size=64, omit_label=1)
    rmodel = pretrained()
    trainer = RandomLabel(rmodel, retain_lambda=0.5)
    trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9)", scheduler="Step(milestones=[2], gamma=0.1)")
    trainer.record_rob({"(R)": train["Retain"], "(F)": train["Forget"], "(Te)": test["Test"]}, n_limit=200)
    subset = trainer.record_loaders["(R)"]
    assert subset.num_samples == 200 and not torch.equal(subset.indices, train["Retain"].indices[:200])  # random, not first
    result = trainer.fit(MergedLoaders(train), n_epochs=3, save_path=tmp_path / "run",
                         save_best={"Clean(R)": "HB", "Clean(F)": "LBO"})  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("Epoch"))
    assert out[header].split() == ["Epoch", "Cost", "Clean(R)", "Clean(F)", "Clean(Te)", "lr", "s/it"]
    rows = [line.split() for line in out[header + 2 : header + 5]]
    assert [r[0] for r in rows] == ["1", "2", "3"] and [r[5] for r in rows] == ["0.01", "0.01", "0.001"]
    retain_acc = rmodel.eval_accuracy(trainer.record_loaders["(R)"])  # an independent pass over the subset
    assert rows[-1][2] == f"{retain_acc:.2f}%"

    files = {name: torch.load(tmp_path / "run" / name, weights_only=True) for name in ("init.pth", "last.pth", "best.pth")}
    for name, value in rmodel.state_dict().items():
        torch.testing.assert_close(files["last.pth"]["rmodel"][name], value)
    best_epoch = files["best.pth"]["record_info"]["Epoch"]
    best_row = rows[best_epoch - 1]
    assert best_row[2] == f"{files['best.pth']['record_info']['Clean(R)']:.2f}%"
    assert max(float(r[2][:-1]) for r in rows) == float(best_row[2][:-1])
    reloaded = pretrained()
    reloaded.load_dict(tmp_path / "run" / "best.pth")
    assert reloaded.eval_accuracy(trainer.record_loaders["(R)"]) == pytest.approx(float(best_row[2][:-1]), abs=0.01)
    torch.testing.assert_close(files["init.pth"]["rmodel"]["model.classifier.4.weight"],
                               pretrained().params["classifier.4.weight"])  # fmt: skip
    assert result.best_record is not None and (tmp_path / "run" / "best.safetensors").is_file()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trainer.fit(MergedLoaders(train), n_epochs=1, save_path=tmp_path / "run")


def test_refit_resumes_the_run_exactly(tmp_path):
    retain, forget = _data(24, seed=1, batch_size=8), _data(8, seed=2, batch_size=4)
    merged = MergedLoaders({"Retain": retain, "Forget": forget})

    def trainer(rmodel):
        t = RandomLabel(rmodel, retain_lambda=0.5)
        t.setup(optimizer="SGD(lr=0.1, momentum=0.9)", scheduler="Cosine", n_epochs=3)
        return t

    straight = RobModel(_linear(), 3)
    trainer(straight).fit(merged, n_epochs=3, record_type=None)
    resumed = RobModel(_linear(), 3)
    trainer(resumed).fit(merged, n_epochs=1, record_type=None, save_path=tmp_path / "run")
    trainer(resumed).fit(merged, n_epochs=3, record_type=None, save_path=tmp_path / "run", refit=True)
    for k in straight.params:
        torch.testing.assert_close(resumed.params[k], straight.params[k])


def test_plain_torch_dataloaders_work_too():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    retain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:32], y[:32]), batch_size=8)
    forget = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[32:], y[32:]), batch_size=4)
    rmodel = RobModel(_linear(), 3)
    trainer = RandomLabel(rmodel, retain_lambda=0.5)
    trainer.setup(optimizer="Adam(lr=1e-2, betas=(0.9, 0.99))")
    trainer.record_rob({"(R)": retain, "(F)": forget}, n_limit=10)
    assert sum(len(b[1]) for b in trainer.record_loaders["(R)"]) == 10
    result = trainer.fit(MergedLoaders({"Retain": retain, "Forget": forget}), n_epochs=2)
    assert result.counters.step == 8 and len(result.history.evals) == 2
    assert result.history.evals[-1]["acc/(R)"] == pytest.approx(rmodel.eval_accuracy(trainer.record_loaders["(R)"]))
