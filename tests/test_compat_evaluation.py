"""FisherForget/Influence on the second-order toolkit, and UnlearningEvaluator/compare on funlearn's metrics."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import funlearn as fl
from funlearn.compat.evaluation import BenchmarkSuite, UnlearningEvaluator, compare
from funlearn.compat.nontrainers import FisherForget, Influence
from funlearn.compat.robmodel import RobModel

from compat_common import pretrained, setup


def test_influence_is_the_damped_newton_step_with_the_woodfisher_inverse():
    """θ' = θ - α (λI + (1/N) Σ g_i g_iᵀ)⁻¹ (1/N) Σ g_i over the retain samples, computed densely here."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    retain = fl.TensorLoader(x[:20], y[:20], 8, shuffle=True, seed=3)  # evaluated unshuffled, all samples
    forget = fl.TensorLoader(x[20:], torch.full((10,), 2), 5, shuffle=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = nn.Linear(4, 3)
    rmodel = RobModel(module, 3)
    alpha, damping = 0.7, 0.05
    result = Influence(rmodel).fit({"Retain": retain, "Forget": forget}, alphas=[alpha], omit_label=2, damping=damping)

    theta = torch.cat([module.weight.detach().reshape(-1), module.bias.detach()])

    def loss(flat, xi, yi):
        w, b = flat[:12].view(3, 4), flat[12:]
        return F.cross_entropy(xi[None] @ w.T + b, yi[None])

    per_sample = torch.stack([torch.func.grad(loss)(theta, xi, yi) for xi, yi in zip(x[:20], y[:20])])
    fisher = damping * torch.eye(15) + per_sample.T @ per_sample / 20
    expected = theta - alpha * torch.linalg.solve(fisher.double(), per_sample.mean(0).double()).float()
    got = torch.cat([rmodel.params["weight"].reshape(-1), rmodel.params["bias"]])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert result.best == 0


def test_influence_guards():
    train, _ = setup().get_loaders_for_rand(batch_size=64, ratio=0.1)
    rmodel = pretrained()
    with pytest.raises(ValueError, match=r"WoodFisher inverse needs .* GiB\); pass curvature='ggn'"):
        Influence(rmodel).fit(train, woodfisher_samples=10**6)
    with pytest.raises(ValueError, match="pass test_loaders"):
        Influence(rmodel).fit(dict(train), alphas=[1.0])  # a plain dict does not know its test set
    with pytest.warns(UserWarning, match="leave the model essentially unchanged"):
        result = Influence(rmodel).fit(train, alphas=[1e-9, 1e-6], repeat=3, woodfisher_samples=200)
    assert all(row["retain"] == result.original["retain"] for row in result.table)  # a no-op, as in torchunlearn


def test_fisher_forget_classwise_is_seeded_and_forgets_the_class(tmp_path):
    train, test = setup().get_loaders_for_classwise(batch_size=64, omit_label=1)
    rmodel = pretrained()
    before = rmodel.eval_accuracy(train["Forget"])
    result = FisherForget(rmodel).fit(train, alphas=[1e-8, 1e-7], repeat=2, save_path=tmp_path / "fisher",
                                      fisher_samples=300)  # fmt: skip
    assert before > 80.0 and rmodel.eval_accuracy(train["Forget"]) == 0.0  # the class row is reset (ClasswiseRule)
    assert rmodel.eval_accuracy(test["Test"]) > 60.0
    with open(tmp_path / "fisher" / "candidates.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["alpha"]), int(r["repeat"])) for r in rows] == [(1e-8, 0), (1e-8, 1), (1e-7, 0), (1e-7, 1)]
    saved = torch.load(tmp_path / "fisher" / "best.pth", weights_only=True)
    assert saved["record_info"] == result.table[result.best]
    torch.testing.assert_close(saved["rmodel"]["model.classifier.4.weight"], rmodel.params["classifier.4.weight"])
    again = pretrained()
    FisherForget(again).fit(train, alphas=[1e-8, 1e-7], repeat=2, fisher_samples=300)
    assert torch.equal(again.params["classifier.0.weight"], rmodel.params["classifier.0.weight"])  # seeded
    with pytest.raises(FileExistsError, match="overwrite=True"):
        FisherForget(pretrained()).fit(train, alphas=[1e-8], save_path=tmp_path / "fisher")


def test_evaluator_keys_values_and_labels(capsys):
    train, test = setup().get_loaders_for_rand(batch_size=64, ratio=0.1)
    model = pretrained()
    evaluator = UnlearningEvaluator(model, train, test, retrained_model=pretrained(), n_limit=300)
    results = evaluator.evaluate()
    assert list(results) == ["RA", "FA", "TA", "UG", "MIA_Efficiency", "ZRF"]
    assert evaluator.sets["retain"].num_samples == 300 and evaluator.sets["forget"].num_samples == 150
    assert results["RA"] == pytest.approx(model.eval_accuracy(evaluator.sets["retain"]))
    assert results["TA"] == pytest.approx(model.eval_accuracy(evaluator.sets["test"]))
    assert results["UG"] == 0.0 and 0.0 <= results["MIA_Efficiency"] <= 1.0 and 0.0 < results["ZRF"] < 1.0
    evaluator.print_report(results)
    report = capsys.readouterr().out
    assert "MIA Efficiency    (forget share called non-member; target: the retrained model's" in report
    assert "low is good" not in report.split("MIA")[1].splitlines()[0]

    random_model = pretrained()
    random_model.params, random_model.buffers = fl.random_init(random_model.fmodel, 0)
    assert UnlearningEvaluator(random_model, train, test, n_limit=300).evaluate()["ZRF"] == pytest.approx(1.0)


def test_compare_and_benchmark_suite(capsys):
    train, test = setup().get_loaders_for_rand(batch_size=64, ratio=0.1)
    models = {"Original": pretrained(), "Noisy": pretrained()}
    models["Noisy"].params = {k: v + 0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1))
                              for k, v in models["Noisy"].params.items()}  # fmt: skip
    results = compare(models, train, test, n_limit=200)
    assert results["Original"]["RA"] > results["Noisy"]["RA"]
    suite = BenchmarkSuite(train, test, n_limit=200)
    suite.add("Original", models["Original"], verbose=False)
    assert suite.results["Original"] == results["Original"]  # same fixed subsets, same seed
    suite.print_table()
    table = capsys.readouterr().out
    assert "N/A" in table and "Original" in table and "closest to the retrained model is best" in table
    with pytest.raises(ValueError, match="test_loaders must contain 'Test'"):
        BenchmarkSuite(train, {"Val": test["Test"]})
