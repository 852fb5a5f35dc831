"""The loop: reproducibility, records, divergence policies, evaluation schedule, inputs, silence."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import funlearn as fl
from funlearn.engine import NonFiniteError


def mlp(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    return fl.load_dataset("digits")


def ce_method(model, tx=None, noisy: bool = False):
    """Cross-entropy; with ``noisy``, 20% of the labels are redrawn from the step key. Reports ``lr``."""

    def objective(params, buffers, batch, key):
        x, y = batch
        if noisy:
            flip = torch.rand(y.shape, generator=key) < 0.2
            y = torch.where(flip, torch.randint(0, 10, y.shape, generator=key), y)
        logits, buffers = model.apply(params, buffers, x, train=True)
        return fl.cross_entropy(logits, y), (buffers, {"lr": torch.tensor(0.1), "count": torch.tensor(3)})

    return fl.gradient_method(objective, tx or fl.sgd(0.1, momentum=0.9))


def small_batches(n: int = 6, nan_at: int | None = None):
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]
    if nan_at is not None:
        batches[nan_at] = (torch.full_like(batches[nan_at][0], math.nan), batches[nan_at][1])
    return batches


def without_times(rows):
    return [{k: v for k, v in r.items() if k not in ("time", "samples_per_s")} for r in rows]


def test_same_seed_same_history_and_a_different_seed_differs(digits):
    model, params, buffers = fl.functional(mlp(), mean=digits.mean, std=digits.std)
    method = ce_method(model, noisy=True)
    evals = {"test": fl.TensorLoader(digits.test_x, digits.test_y, 128, shuffle=False)}

    def go(seed):
        loader = fl.TensorLoader(digits.train_x, digits.train_y, 128, seed=seed)
        return fl.run(method, params, buffers, loader, epochs=2, seed=seed, model=model, eval_loaders=evals,
                      progress=False)

    a, b, c = go(1), go(1), go(2)
    assert without_times(a.history.steps) == without_times(b.history.steps)
    assert without_times(a.history.evals) == without_times(b.history.evals)
    assert all(torch.equal(a.params[k], b.params[k]) for k in params)
    assert [r["loss"] for r in a.history.steps] != [r["loss"] for r in c.history.steps]
    assert all(torch.equal(v, params[k]) for k, v in fl.functional(mlp())[1].items())  # inputs untouched


def test_records_schema_and_files(digits, tmp_path):
    model, params, buffers = fl.functional(mlp(), mean=digits.mean, std=digits.std)
    loader = fl.TensorLoader(digits.train_x, digits.train_y, 256, seed=0)  # 6 batches, the last one of 158
    evals = {"train": fl.TensorLoader(digits.train_x, digits.train_y, 512, shuffle=False),
             "test": fl.TensorLoader(digits.test_x, digits.test_y, 512, shuffle=False)}
    result = fl.run(ce_method(model), params, buffers, loader, epochs=2, model=model, eval_loaders=evals,
                    eval_at_start=True, metrics=lambda p, b: {"weight_norm": fl.tree.global_norm(p)},
                    run_dir=tmp_path, progress=False)
    h = result.history
    assert [r["step"] for r in h.steps] == list(range(1, 13))
    assert [(r["epoch"], r["batch"]) for r in h.steps] == [(e, b) for e in (1, 2) for b in range(6)]
    first = h.steps[0]
    assert list(first) == ["step", "epoch", "batch", "time", "samples_per_s", "skipped", "loss", "lr", "count"]
    assert first["skipped"] is False and first["count"] == 3.0 and first["lr"] == pytest.approx(0.1)
    assert all(r["samples_per_s"] > 0 for r in h.steps)
    times = [r["time"] for r in h.steps]
    assert times == sorted(times)
    assert [(r["step"], r["epoch"]) for r in h.evals] == [(0, 0), (6, 1), (12, 2)]
    assert list(h.evals[1]) == ["step", "epoch", "time", "loss", "lr", "acc/train", "acc/test", "weight_norm"]
    assert h.evals[1]["loss"] == pytest.approx(sum(r["loss"] for r in h.steps[:6]) / 6)
    assert "loss" not in h.evals[0]  # nothing trained yet
    # the accuracy is the eval-mode accuracy on the whole loader, recomputed independently here
    final_logits = model.apply(result.params, result.buffers, digits.test_x)[0]
    assert h.evals[-1]["acc/test"] == pytest.approx(100 * (final_logits.argmax(1) == digits.test_y).float().mean().item())
    assert h.evals[-1]["weight_norm"] == pytest.approx(float(fl.tree.global_norm(result.params)))
    assert h.stop_reason == result.stop_reason == "completed: 2 epochs, 12 steps" and result.completed

    data = json.loads((tmp_path / "history.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["format"] == "funlearn.history" and data["version"] == 1
    assert data["steps"] == [{**r} for r in h.steps] and data["evals"] == h.evals
    assert data["stop_reason"] == h.stop_reason
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "epoch", "time", "acc/train", "acc/test", "weight_norm", "loss", "lr"]
    assert [float(r["acc/test"]) for r in rows] == pytest.approx(h.column("acc/test"))
    with open(tmp_path / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    assert len(steps) == 12 and float(steps[3]["loss"]) == pytest.approx(h.steps[3]["loss"])
    assert fl.load_history(tmp_path).evals == h.evals
    table = h.table(["step", "acc/test"]).splitlines()
    assert table[0].split() == ["step", "acc/test"] and len(table) == 4


@pytest.fixture
def nan_setup():
    model, params, buffers = fl.functional(mlp())
    return model, params, buffers, ce_method(model, fl.sgd(0.1, momentum=0.9))


def test_nonfinite_stop_keeps_the_last_good_params(nan_setup, tmp_path):
    model, params, buffers, method = nan_setup
    two_steps = fl.run(method, params, buffers, small_batches(), steps=2, progress=False)
    result = fl.run(method, params, buffers, small_batches(nan_at=2), epochs=3, run_dir=tmp_path, progress=False)
    on_disk = fl.load_checkpoint(tmp_path / "last.safetensors", params, buffers)
    assert all(torch.equal(on_disk.params[k], two_steps.params[k]) for k in params)
    assert on_disk.metadata["stop_reason"] == result.stop_reason == fl.load_history(tmp_path).stop_reason
    assert not result.completed and result.counters.step == 2
    assert all(torch.equal(result.params[k], two_steps.params[k]) for k in params)
    assert all(torch.equal(result.buffers[k], two_steps.buffers[k]) for k in buffers)
    assert "non-finite loss and params/buffers at step 3 (epoch 1, batch 2; loss=nan)" in result.stop_reason
    assert "kept the parameters of step 2" in result.history.stop_reason
    assert result.history.steps[-1]["skipped"] is True and math.isnan(result.history.steps[-1]["loss"])


def test_nonfinite_params_with_a_finite_loss_are_caught(nan_setup):
    model, params, buffers, _ = nan_setup
    method = ce_method(model, fl.sgd(math.inf))
    result = fl.run(method, params, buffers, small_batches(), steps=5, progress=False)
    assert result.counters.step == 0 and "non-finite params/buffers at step 1" in result.stop_reason
    assert all(torch.equal(result.params[k], params[k]) for k in params)


def test_nonfinite_skip_discards_the_step_and_goes_on(nan_setup):
    model, params, buffers, method = nan_setup
    skipped = fl.run(method, params, buffers, small_batches(nan_at=2), epochs=1, on_nonfinite="skip", progress=False)
    clean = small_batches()
    without = fl.run(method, params, buffers, clean[:2] + clean[3:], epochs=1, progress=False)
    assert skipped.completed and skipped.counters.step == 6
    assert [r["skipped"] for r in skipped.history.steps] == [False, False, True, False, False, False]
    assert all(torch.equal(skipped.params[k], without.params[k]) for k in params)  # momentum state kept too


def test_nonfinite_raise(nan_setup):
    model, params, buffers, method = nan_setup
    with pytest.raises(NonFiniteError, match="non-finite loss and params/buffers at step 3"):
        fl.run(method, params, buffers, small_batches(nan_at=2), epochs=1, on_nonfinite="raise", progress=False)


def test_silent_mode_prints_nothing(digits, capfd, tmp_path):
    model, params, buffers = fl.functional(mlp(), mean=digits.mean, std=digits.std)
    loader = fl.TensorLoader(digits.train_x, digits.train_y, 256, seed=0)
    evals = {"test": fl.TensorLoader(digits.test_x, digits.test_y, 512, shuffle=False)}
    fl.train(model, params, buffers, loader, epochs=1, eval_loaders=evals, progress=False, run_dir=tmp_path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    fl.train(model, params, buffers, loader, epochs=1, eval_loaders=evals, progress=True)
    out, err = capfd.readouterr()
    assert "epoch 1/1" in err and "test=" in err  # the bar, with the live accuracy


def test_eval_every_k_steps_steps_budget_and_a_final_evaluation(digits):
    model, params, buffers = fl.functional(mlp(), mean=digits.mean, std=digits.std)
    loader = fl.TensorLoader(digits.train_x, digits.train_y, 256, seed=0)
    evals = {"test": fl.TensorLoader(digits.test_x, digits.test_y, 512, shuffle=False)}
    result = fl.run(ce_method(model), params, buffers, loader, steps=10, model=model, eval_loaders=evals,
                    eval_every=4, progress=False)
    assert result.counters.step == 10 and (result.counters.epoch, result.counters.batch) == (1, 4)
    assert [(r["step"], r["epoch"]) for r in result.history.evals] == [(4, 1), (8, 2), (10, 2)]
    short = fl.run(ce_method(model), params, buffers, loader, epochs=5, steps=7, progress=False)
    assert short.counters.step == 7  # whichever comes first


def test_eval_subset_is_drawn_once_with_the_seed(digits):
    model, params, buffers = fl.functional(mlp(), mean=digits.mean, std=digits.std)
    loader = fl.TensorLoader(digits.train_x, digits.train_y, 256, seed=0)
    evals = {"test": fl.TensorLoader(digits.test_x, digits.test_y, 64, shuffle=False)}
    result = fl.run(ce_method(model), params, buffers, loader, epochs=2, model=model, eval_loaders=evals,
                    eval_subset=50, seed=4, progress=False)
    accs = result.history.column("acc/test")
    assert all(abs(a * 50 / 100 - round(a * 50 / 100)) < 1e-9 for a in accs)  # multiples of 1/50
    subset = fl.fixed_subset(evals["test"], 50, fl.random.fold_in(4, 101, __import__("zlib").crc32(b"test")))
    expected = fl.accuracies(model, result.params, result.buffers, {"test": subset})["acc/test"]
    assert accs[-1] == expected


def test_plain_lists_dataloaders_and_merged_batches_are_accepted(digits):
    model, params, buffers = fl.functional(mlp(), mean=digits.mean, std=digits.std)
    method = ce_method(model)
    data = small_batches()
    from_list = fl.run(method, params, buffers, data, epochs=2, progress=False)
    dataset = TensorDataset(torch.cat([x for x, _ in data]), torch.cat([y for _, y in data]))
    from_loader = fl.run(method, params, buffers, DataLoader(dataset, batch_size=16), epochs=2, progress=False)
    assert all(torch.equal(from_list.params[k], from_loader.params[k]) for k in params)

    def split_objective(p, b, batch, key):
        logits, b = model.apply(p, b, batch["retain"][0], train=True)
        forget_logits, b = model.apply(p, b, batch["forget"][0], train=True)
        loss = fl.cross_entropy(logits, batch["retain"][1]) - 0.1 * fl.cross_entropy(forget_logits, batch["forget"][1])
        return loss, (b, {})

    split = fl.random_split(digits.train_y, 0.1, seed=0)
    loaders = fl.split_loaders(digits, split, 256)
    steps = fl.merged_batches(loaders["forget"], loaders["retain"])
    result = fl.run(fl.gradient_method(split_objective, fl.sgd(0.05)), params, buffers, steps, epochs=1, progress=False)
    assert result.counters.samples == split.retain.numel() + 6 * split.forget.numel()  # forget restarts each pass


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "give epochs= or steps="),
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"steps": 2.5}, "steps must be a positive int"),
        ({"epochs": 1, "on_nonfinite": "ignore"}, "on_nonfinite must be"),
        ({"epochs": 1, "eval_every": "iter"}, "eval_every"),
        ({"epochs": 1, "compile": "yes"}, "compile must be"),
        ({"epochs": 1, "best": {"acc/test": "max"}}, "best= needs something to evaluate"),
        ({"epochs": 1, "eval_loaders": {"test": []}}, "eval_loaders need model="),
        ({"epochs": 1, "resume": True}, "resume=True needs run_dir"),
        ({"epochs": 1, "plot": True}, "write into run_dir"),
        ({"epochs": 1, "seed": "0"}, "seed must be an int"),
    ],
)
def test_bad_arguments_fail_before_any_work(nan_setup, kwargs, message):
    model, params, buffers, method = nan_setup
    calls = []
    counted = fl.Method(method.init, lambda *a: calls.append(1) or method.step(*a))
    with pytest.raises(ValueError, match=message):
        fl.run(counted, params, buffers, small_batches(), progress=False, **kwargs)
    assert calls == []


def test_one_shot_iterators_and_bad_metrics_are_refused(nan_setup):
    model, params, buffers, method = nan_setup
    with pytest.raises(ValueError, match="re-iterable"):
        fl.run(method, params, buffers, iter(small_batches()), epochs=1, progress=False)
    vector_metric = fl.Method(method.init, lambda *a: (*method.step(*a)[:3], {"loss": torch.ones(3)}))
    with pytest.raises(ValueError, match="metric 'loss' has shape"):
        fl.run(vector_metric, params, buffers, small_batches(), epochs=1, progress=False)


def test_tensorboard_is_an_optional_extra(nan_setup, tmp_path):
    model, params, buffers, method = nan_setup
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install funlearn\[tensorboard\]"):
            fl.run(method, params, buffers, small_batches(), epochs=1, run_dir=tmp_path, tensorboard=True)
        assert not any(tmp_path.iterdir())  # refused before any work
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fl.run(method, params, buffers, small_batches(), epochs=2, run_dir=tmp_path, tensorboard=True,
                    metrics=lambda p, b: {"norm": fl.tree.global_norm(p)}, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/norm")] == [
        (r["step"], pytest.approx(r["norm"])) for r in result.history.evals
    ]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(result.history.column("loss", table="steps"))


def test_plot_writes_a_png(nan_setup, tmp_path):
    model, params, buffers, method = nan_setup
    fl.run(method, params, buffers, small_batches(), epochs=2, metrics=lambda p, b: {"acc/fake": 50.0},
           run_dir=tmp_path, plot=True, progress=False)
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class NoLen:
    """Re-iterable batches without ``len()``."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return iter(self.data)


class WrongLen(NoLen):
    def __len__(self):
        return 9


def test_loaders_without_len_and_loaders_with_a_wrong_len(nan_setup):
    model, params, buffers, method = nan_setup
    data = small_batches()
    result = fl.run(method, params, buffers, NoLen(data), epochs=2, progress=False)
    reference = fl.run(method, params, buffers, data, epochs=2, progress=False)
    assert result.counters.step == 12 and result.counters.epoch == 2
    assert all(torch.equal(result.params[k], reference.params[k]) for k in params)
    with pytest.raises(RuntimeError, match="yielded 6 batches in epoch 1 but its len\\(\\) is 9"):
        fl.run(method, params, buffers, WrongLen(data), epochs=1, progress=False)
