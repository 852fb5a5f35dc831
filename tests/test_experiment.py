"""The preset registry and the experiment pipeline (funlearn.experiment), on the embedded digits data."""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import funlearn as fl

SMALL = {"channels": (4, 8)}


@pytest.fixture(scope="module")
def setting():
    """digits, a class-wise split (class 1), its loaders and a tiny untrained small_cnn."""
    bundle = fl.load_dataset("digits")
    split = fl.make_split("class:1", bundle.train_y, bundle.test_y)
    loaders = fl.split_loaders(bundle, split, 32, seed=0)
    net = fl.create_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0, **SMALL)
    model, params, buffers = fl.functional(net, mean=bundle.mean, std=bundle.std)
    batch = next(iter(fl.merged_batches(loaders["forget"], loaders["retain"], seed=0)))
    return net, model, params, buffers, loaders, batch


def _context(setting, **kwargs):
    _, model, params, buffers, loaders, _ = setting
    return fl.PresetContext(model, params, buffers, loaders, 10, steps_per_epoch=5, epochs=2, forget_classes=(1,), **kwargs)


def _step(setting, name, **kwargs):
    """One step of preset ``name`` from the context's params: the change of every parameter, and the metrics."""
    _, _, params, buffers, _, batch = setting
    method = fl.build_method(name, _context(setting, **kwargs))
    new_params, _, _, metrics = method.step(params, buffers, method.init(params, buffers), batch, fl.random.key(0, 0))
    return fl.tree.sub(new_params, params), metrics


def test_registry_lists_every_preset_of_the_issue():
    expected = ["finetune", "neggrad", "neggrad_plus", "random_label", "l1_sparse", "uam", "salun", "scrub",
                "bad_teacher", "boundary_shrink", "fisher_forget", "influence"]  # fmt: skip
    assert fl.available_presets() == expected
    assert fl.available_presets("closed_form") == ["fisher_forget", "influence"]
    assert fl.get_preset("NegGrad-Plus").name == "neggrad_plus"  # case and '-' insensitive
    with pytest.raises(ValueError, match="unknown method 'foo'; valid methods: finetune, neggrad"):
        fl.get_preset("foo")
    with pytest.raises(ValueError, match="already registered"):
        fl.register_preset(fl.get_preset("salun"))


@pytest.mark.parametrize("name", fl.available_presets("training"))
def test_every_training_preset_builds_and_takes_one_finite_step(setting, name):
    delta, metrics = _step(setting, name)
    assert "loss" in metrics and all(bool(torch.isfinite(v).all()) for v in metrics.values())
    assert bool(fl.tree.all_finite(delta)) and float(fl.tree.global_norm(delta)) > 0


LINEAR_IN_LR = [n for n in fl.available_presets("training") if n not in ("l1_sparse", "scrub")]


@pytest.mark.parametrize("name", LINEAR_IN_LR)
def test_the_learning_rate_override_reaches_the_optimizer(setting, name):
    """A first step of SGD (momentum buffer = g) or Adam (m / sqrt(v) = g / |g|) is linear in the learning
    rate, with the same key (same random labels): doubling the override doubles the update."""
    lr = 10 * (fl.get_preset(name).learning_rate or 0)
    one, _ = _step(setting, name, learning_rate=lr)
    two, _ = _step(setting, name, learning_rate=2 * lr)
    for k in one:
        torch.testing.assert_close(two[k], 2 * one[k], rtol=1e-4, atol=1e-7)


def test_finetune_step_equals_hand_written_sgd_on_the_module(setting):
    """finetune with learning_rate=a: θ - a (∇CE_retain + 5e-4 θ), by plain autograd on the nn.Module."""
    net, _, params, _, _, batch = setting
    delta, _ = _step(setting, "finetune", learning_rate=0.05)
    module = copy.deepcopy(net).train()
    x, y = batch["retain"]
    F.cross_entropy(module(_normalised(x)), y).backward()
    for name, p in module.named_parameters():
        torch.testing.assert_close(delta[name], -0.05 * (p.grad + 5e-4 * params[name]), rtol=1e-4, atol=1e-7)


def _normalised(x):
    """The model's input normalisation, written out: (x - mean) / std with digits' statistics."""
    bundle = fl.load_dataset("digits")
    return (x - torch.tensor(bundle.mean).view(1, -1, 1, 1)) / torch.tensor(bundle.std).view(1, -1, 1, 1)


def test_l1_sparse_and_scrub_take_the_learning_rate_override(setting):
    for name in ("l1_sparse", "scrub"):
        default, _ = _step(setting, name)
        other, _ = _step(setting, name, learning_rate=3 * fl.get_preset(name).learning_rate)
        assert fl.tree.global_norm(fl.tree.sub(other, default)) > 1e-3 * fl.tree.global_norm(default)


def test_preset_options_are_keyword_arguments_of_the_preset(setting):
    narrow, _ = _step(setting, "salun", options={"fraction": 0.1})
    moved = sum(int((v != 0).sum()) for v in narrow.values())
    total = sum(v.numel() for v in narrow.values())
    assert moved <= int(0.1 * total)  # the saliency mask keeps exactly 10% of the weights trainable
    with pytest.raises(TypeError, match="not_an_option"):
        _step(setting, "salun", options={"not_an_option": 1})


@pytest.mark.parametrize("name, options", [("fisher_forget", {"fisher_samples": 200}),
                                           ("influence", {"curvature_samples": 100, "maxiter": 3})])  # fmt: skip
def test_closed_form_presets_choose_on_the_selection_sets(setting, name, options):
    _, model, params, buffers, loaders, _ = setting
    selection = {"retain": fl.fixed_subset(loaders["retain_eval"], 150, 1), "forget": loaders["forget_eval"],
                 "test": loaders["test_retain"]}  # fmt: skip
    result = fl.run_closed_form(name, _context(setting, options=options, selection=selection))
    assert result.best == max(range(len(result.table)), key=lambda i: (result.table[i]["score"], -i))
    assert {k: v.shape for k, v in result.params.items()} == {k: v.shape for k, v in params.items()}
    chosen = result.table[result.best]
    for split, data in selection.items():  # the table's accuracies are those of the selection sets
        correct = sum(int((model.logits(result.params, buffers, x).argmax(-1) == y).sum()) for x, y in data)
        assert chosen[split] == pytest.approx(correct / sum(len(y) for _, y in data))
    with pytest.raises(ValueError, match="closed-form method: use run_closed_form"):
        fl.build_method(name, _context(setting))
    with pytest.raises(ValueError, match="has no learning rate"):
        fl.run_closed_form(name, _context(setting, learning_rate=0.1))


def _config(tmp_path, **kwargs):
    base = fl.ExperimentConfig.for_dataset("digits")
    settings = {"model_kwargs": SMALL, "training": replace(base.training, epochs=2), "cache_dir": tmp_path / "cache",
                    "progress": False, "mia_max_samples": 500}  # fmt: skip
    return replace(base, **{**settings, **kwargs})


def test_original_model_is_cached_across_scenarios_and_retrained_on_a_new_recipe(tmp_path):
    first = fl.train_original(fl.prepare_experiment(_config(tmp_path, scenario="random:0.1")))
    assert not first.cached and first.path.name.startswith("original-digits-")
    again = fl.train_original(fl.prepare_experiment(_config(tmp_path, scenario="class:3")))  # the split is irrelevant
    assert again.cached and again.path == first.path and again.time_s == first.time_s
    assert all(torch.equal(again.params[k], first.params[k]) for k in first.params)
    assert list(again.params) == list(first.params)  # the model's order: closed-form noise is drawn in it
    longer = _config(tmp_path, training=replace(_config(tmp_path).training, epochs=3))
    assert not fl.train_original(fl.prepare_experiment(longer)).cached
    retrained = fl.train_retrained(fl.prepare_experiment(_config(tmp_path, scenario="class:3")))
    assert retrained.path.name.startswith("retrain-digits-class_3")


def test_settings_are_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'foo'"):
        fl.UnlearningSettings(learning_rates={"foo": 0.1})
    with pytest.raises(ValueError, match="closed-form method and has none"):
        fl.UnlearningSettings(learning_rates={"influence": 0.1})
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fl.UnlearningSettings(epochs=0)
    with pytest.raises(ValueError, match="unknown dataset 'nope'; valid datasets: cifar10"):
        fl.ExperimentConfig(dataset="nope")
    with pytest.raises(fl.ConfigError, match=r"scenario: classes: class 12 does not exist") as info:
        fl.prepare_experiment(_config(tmp_path, scenario="class:12"))
    assert info.value.field == "scenario" and not (tmp_path / "cache").exists()
    with pytest.raises(fl.ConfigError, match="LeNet needs images of at least 12x12") as info:
        fl.prepare_experiment(_config(tmp_path, model="lenet", model_kwargs={}))
    assert info.value.field == "model"


def test_run_method_times_only_the_method_and_records_curves(tmp_path):
    config = _config(tmp_path, scenario="class:1", methods=("neggrad_plus",), eval_points=4)
    exp = fl.prepare_experiment(config)
    original = fl.train_original(exp)
    start = time.perf_counter()
    run = fl.run_method(exp, "neggrad_plus", original.params, original.buffers)
    wall = time.perf_counter() - start
    assert 0 < run.time_s < wall
    steps = len(exp.loaders["retain"])  # one epoch of merged batches is one pass over the retain set
    assert run.settings == {"learning_rate": 0.01, "epochs": 1, "steps": steps, "batch_size": 32, "options": {}}
    assert next(r["step"] for r in run.history.evals) == 0 and run.history.evals[-1]["step"] == steps
    assert {"acc/retain", "acc/forget", "acc/test", "acc/test_forget"} <= set(run.history.evals[-1])


def test_model_files_round_trip_and_refuse_another_model(tmp_path):
    exp = fl.prepare_experiment(_config(tmp_path))
    path = fl.save_model_file(tmp_path / "m.safetensors", exp, exp.init_params, exp.init_buffers, role="test")
    params, _, info = fl.load_model_file(path, exp)
    assert info["role"] == "test" and info["model_kwargs"] == {"channels": [4, 8]}
    assert all(torch.equal(params[k], exp.init_params[k]) for k in params)
    assert fl.read_experiment_fields(path)["training"] == exp.config.training.as_dict()
    wider = fl.prepare_experiment(_config(tmp_path, model_kwargs={"channels": (8, 8)}))
    with pytest.raises(fl.CheckpointError, match="does not match the model"):
        fl.load_model_file(path, wider)
