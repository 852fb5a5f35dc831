"""Checkpoints and resume: bit-identical continuation on CPU, atomic writes, run-directory rules."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import funlearn as fl
import funlearn.io
from funlearn.engine import Counters, load_checkpoint, save_checkpoint


def mlp(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    return fl.load_dataset("digits")


def random_label_method(model):
    """CE on retain + CE on forget with labels drawn from the step key (uses the key, BN twice)."""

    def objective(params, buffers, batch, key):
        x_r, y_r = batch["retain"]
        x_f, y_f = batch["forget"]
        logits_r, buffers = model.apply(params, buffers, x_r, train=True)
        logits_f, buffers = model.apply(params, buffers, x_f, train=True)
        random_labels = torch.randint(0, 10, y_f.shape, generator=key)
        loss = fl.cross_entropy(logits_r, y_r) + 0.5 * fl.cross_entropy(logits_f, random_labels)
        return loss, (buffers, {"lr": torch.tensor(0.05)})

    return fl.gradient_method(objective, fl.sgd(0.05, momentum=0.9, weight_decay=5e-4))


def setup(digits):
    model, params, buffers = fl.functional(mlp(), mean=digits.mean, std=digits.std)
    split = fl.random_split(digits.train_y, 0.1, seed=0)
    loaders = fl.split_loaders(digits, split, batch_size=256, seed=3)
    forget = fl.TensorLoader(digits.train_x, digits.train_y, 64, augment="crop_flip", padding=1, seed=5,
                             indices=split.forget)
    batches = fl.merged_batches(forget, loaders["retain"], seed=7)  # 6 steps per epoch
    evals = {"forget": loaders["forget_eval"], "test": loaders["test"]}
    return model, params, buffers, batches, evals


class Crash(Exception):
    pass


def crashing(method, at_call: int | None, calls: list | None = None):
    """``method`` whose step raises at call ``at_call``; the calls are counted in ``calls``."""
    calls = [] if calls is None else calls

    def step(*args):
        calls.append(1)
        if len(calls) == at_call:
            raise Crash(f"simulated crash at call {at_call}")
        return method.step(*args)

    return fl.Method(method.init, step)


def assert_trees_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def without_times(rows):
    return [{k: v for k, v in r.items() if k not in ("time", "samples_per_s")} for r in rows]


@pytest.mark.parametrize("save_every, crash_at", [(4, 11), ("epoch", 9)], ids=["mid-epoch", "epoch-end"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(digits, tmp_path, save_every, crash_at):
    model, params, buffers, batches, evals = setup(digits)
    method = random_label_method(model)
    options = dict(epochs=3, seed=11, model=model, eval_loaders=evals, eval_every=2, save_every=save_every,
                   best={"acc/test": "max", "acc/forget": "min"}, progress=False)
    full = fl.run(method, params, buffers, batches, run_dir=tmp_path / "full", **options)

    with pytest.raises(Crash):
        fl.run(crashing(method, crash_at), params, buffers, batches, run_dir=tmp_path / "cut", **options)
    saved = load_checkpoint(tmp_path / "cut" / "last.safetensors", params, buffers).counters
    last_save = (crash_at - 1) // 4 * 4 if save_every == 4 else (crash_at - 1) // 6 * 6
    assert saved.step == last_save and saved.step < crash_at - 1
    if save_every == 4:
        assert saved.batch != 0  # the checkpoint is in the middle of an epoch
    calls = []
    resumed = fl.run(crashing(method, None, calls), params, buffers, batches, run_dir=tmp_path / "cut", resume=True,
                     **options)
    assert len(calls) == 18 - saved.step  # it continued from the checkpoint, it did not replay

    assert_trees_equal(resumed.params, full.params)
    assert_trees_equal(resumed.buffers, full.buffers)
    assert_trees_equal(fl.state_to_tensors(resumed.state), fl.state_to_tensors(full.state))
    assert_trees_equal(resumed.best_params, full.best_params)
    assert without_times(resumed.history.steps) == without_times(full.history.steps)
    assert without_times(resumed.history.evals) == without_times(full.history.evals)
    assert resumed.counters.step == full.counters.step == 18
    on_disk = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [r["step"] for r in on_disk["steps"]] == list(range(1, 19))


def test_resume_a_list_of_batches_and_extend_a_finished_run(digits, tmp_path):
    model, params, buffers, _, _ = setup(digits)
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(5)]

    def objective(p, b, batch, key):
        logits, b = model.apply(p, b, batch[0], train=True)
        return fl.cross_entropy(logits, batch[1]), (b, {})

    method = fl.gradient_method(objective, fl.adam(1e-2))
    full = fl.run(method, params, buffers, data, epochs=4, save_every=3, progress=False)
    with pytest.raises(Crash):
        fl.run(crashing(method, 8), params, buffers, data, epochs=4, save_every=3, run_dir=tmp_path, progress=False)
    calls = []
    two = fl.run(crashing(method, None, calls), params, buffers, data, epochs=2, run_dir=tmp_path, resume=True,
                 save_every=3, progress=False)
    assert two.counters.step == 10 and two.completed and len(calls) == 10 - 6
    four = fl.run(method, params, buffers, data, epochs=4, resume=tmp_path, save_every=3, progress=False)
    assert_trees_equal(four.params, full.params)
    assert four.history.stop_reason == "completed: 4 epochs, 20 steps"


def test_resume_a_dataloader_driven_by_a_seeded_batch_sampler(digits, tmp_path):
    model, params, buffers, _, _ = setup(digits)
    dataset = TensorDataset(digits.train_x, digits.train_y)
    loader = DataLoader(dataset, batch_sampler=fl.BatchSampler(len(dataset), 256, seed=2))  # shuffled, 6 batches

    def objective(p, b, batch, key):
        logits, b = model.apply(p, b, batch[0], train=True)
        return fl.cross_entropy(logits, batch[1]), (b, {})

    method = fl.gradient_method(objective, fl.sgd(0.05, momentum=0.9))
    options = dict(epochs=2, save_every=4, progress=False)
    full = fl.run(method, params, buffers, loader, **options)
    with pytest.raises(Crash):
        fl.run(crashing(method, 7), params, buffers, loader, run_dir=tmp_path, **options)
    resumed = fl.run(method, params, buffers, loader, run_dir=tmp_path, resume=True, **options)
    assert_trees_equal(resumed.params, full.params)  # the loader was told its epoch: same order as the full run


def test_an_interrupted_write_leaves_the_previous_checkpoint_loadable(digits, tmp_path, monkeypatch):
    model, params, buffers, batches, evals = setup(digits)
    method = random_label_method(model)
    options = dict(epochs=2, seed=1, progress=False, run_dir=tmp_path)
    real_fsync, calls = funlearn.io.os.fsync, []

    # Atomic writes fsync the file, then the directory. Writes: history.json, history.csv, steps.csv,
    # last.safetensors at the start, then the same four after epoch 1: the 8th write (epoch 1's
    # last.safetensors) dies after its bytes went to the temporary file, at fsync call 15.
    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 15:
            raise OSError("simulated crash while writing")
        return real_fsync(fd)

    monkeypatch.setattr(funlearn.io.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated crash"):
        fl.run(method, params, buffers, batches, **options)
    monkeypatch.setattr(funlearn.io.os, "fsync", real_fsync)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "history.json", "last.safetensors",
                                                          "steps.csv"]  # no temporary file left behind
    previous = load_checkpoint(tmp_path / "last.safetensors", params, buffers, method.init(params, buffers))
    assert previous.counters.step == 0
    assert_trees_equal(previous.params, params)
    resumed = fl.run(method, params, buffers, batches, resume=True, **options)
    full = fl.run(method, params, buffers, batches, **{**options, "run_dir": None})
    assert_trees_equal(resumed.params, full.params)
    # history.json had been written for epoch 1 before last.safetensors failed: it was cut back to step 0
    assert without_times(resumed.history.steps) == without_times(full.history.steps)


def test_checkpoint_round_trip_and_validation(tmp_path):
    model, params, buffers = fl.functional(mlp())
    tx = fl.sgd(0.1, momentum=0.9)
    state = tx.init(params)
    state = tx.update({k: torch.ones_like(v) for k, v in params.items()}, state, params)[1]
    counters = Counters(step=7, epoch=1, batch=2, samples=300, elapsed=1.5)
    save_checkpoint(tmp_path / "c.safetensors", params, buffers, state, seed=3, counters=counters,
                    metadata={"note": {"a": [1, 2]}})
    loaded = load_checkpoint(tmp_path / "c.safetensors", params, buffers, tx.init(params))
    assert loaded.seed == 3 and loaded.counters == counters and loaded.metadata["note"] == {"a": [1, 2]}
    assert_trees_equal(loaded.params, params)
    assert_trees_equal(loaded.state[1].trace, state[1].trace)
    p2, _, _ = fl.load_params(tmp_path / "c.safetensors", model)  # plain parameter loading works too
    assert_trees_equal(p2, params)

    _, other_params, other_buffers = fl.functional(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    with pytest.raises(fl.CheckpointError, match="unexpected params"):
        load_checkpoint(tmp_path / "c.safetensors", other_params, other_buffers)
    fl.save_params(tmp_path / "plain.safetensors", params, buffers)
    with pytest.raises(fl.CheckpointError, match="not a funlearn checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors", params, buffers)


def test_run_directory_rules(digits, tmp_path):
    model, params, buffers, batches, _ = setup(digits)
    method = random_label_method(model)
    fl.run(method, params, buffers, batches, steps=2, run_dir=tmp_path / "r", progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fl.run(method, params, buffers, batches, steps=2, run_dir=tmp_path / "r", progress=False)
    (tmp_path / "r" / "notes.txt").write_text("mine")
    again = fl.run(method, params, buffers, batches, steps=3, run_dir=tmp_path / "r", overwrite=True, progress=False)
    assert again.counters.step == 3 and (tmp_path / "r" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="seed=5 differs"):
        fl.run(method, params, buffers, batches, steps=4, seed=5, resume=tmp_path / "r", progress=False)
    with pytest.raises(FileNotFoundError, match="no last.safetensors"):
        fl.run(method, params, buffers, batches, steps=4, resume=tmp_path / "nothing", progress=False)
    with pytest.raises(ValueError, match="contradict"):
        fl.run(method, params, buffers, batches, steps=4, run_dir=tmp_path / "r", resume=True, overwrite=True)
    fresh = fl.run(method, params, buffers, batches, steps=1, run_dir=tmp_path / "new", resume=True, progress=False)
    assert fresh.counters.step == 1  # resume=True on a directory without a run starts one


def test_per_epoch_checkpoints_hold_that_epoch(digits, tmp_path):
    model, params, buffers, batches, _ = setup(digits)
    method = random_label_method(model)
    result = fl.run(method, params, buffers, batches, epochs=2, run_dir=tmp_path, save_epochs=True, progress=False)
    one_epoch = fl.run(method, params, buffers, batches, epochs=1, progress=False)
    first = load_checkpoint(tmp_path / "epoch_0001.safetensors", params, buffers, method.init(params, buffers))
    assert first.counters.step == 6 and first.counters.epoch == 1
    assert_trees_equal(first.params, one_epoch.params)
    second = load_checkpoint(tmp_path / "epoch_0002.safetensors", params, buffers)
    assert_trees_equal(second.params, result.params)
