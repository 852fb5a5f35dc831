"""Best selection: lexicographic criteria with tie-breaks, closest_to, callables; NaN never wins."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import funlearn as fl
from funlearn.engine import BestCriterion, closest_to, load_checkpoint, select_best

NAN = math.nan


def records(*rows):
    return [dict(zip(("acc/retain", "acc/forget"), row)) for row in rows]


def test_lexicographic_max_then_min():
    rs = records((90, 50), (95, 60), (95, 40), (94, 10), (95, 40))
    assert select_best(rs, {"acc/retain": "max", "acc/forget": "min"}) == 2  # ties: the earlier stays
    assert select_best(rs, {"acc/forget": "min", "acc/retain": "max"}) == 3
    assert select_best(rs, {"acc/retain": "min"}) == 0


def test_exact_ties_keep_the_earliest_record():
    rs = records((80, 5), (80, 5), (80, 5))
    assert select_best(rs, {"acc/retain": "max", "acc/forget": "min"}) == 0


def test_nan_never_wins_not_even_first_nor_in_a_tie_break_key():
    rs = records((NAN, 0), (70, NAN), (60, 50), (70, 80))
    # record 1 would win on retain accuracy, but its tie-break key is NaN (torchunlearn's E7 defect)
    assert select_best(rs, {"acc/retain": "max", "acc/forget": "min"}) == 3
    assert select_best(records((NAN, 1), (NAN, 2)), {"acc/retain": "max"}) is None
    assert select_best(rs, lambda r: r["acc/retain"] - r["acc/forget"]) == 2


def test_closest_to_a_reference():
    rs = records((99, 95), (98, 80), (97, 84), (99, 76))
    assert select_best(rs, {"acc/forget": closest_to(80.0)}) == 1
    # 76 and 84 are equally close to 80: the retain accuracy breaks the tie
    rs = records((97, 84), (99, 76))
    assert select_best(rs, {"acc/forget": closest_to(80.0), "acc/retain": "max"}) == 1
    assert select_best(rs, {"acc/forget": closest_to(80.0)}) == 0


def test_callable_criterion_higher_is_better():
    rs = records((90, 50), (85, 10), (99, 90))
    assert select_best(rs, lambda r: r["acc/retain"] - r["acc/forget"]) == 1
    criterion = BestCriterion(lambda r: -r["acc/forget"])
    assert criterion.is_better(rs[1], rs[0]) and not criterion.is_better(rs[0], rs[1])
    assert criterion.keys == []


def test_bad_criteria_are_named():
    with pytest.raises(ValueError, match=r"best\['acc/retain'\] = 'highest'"):
        BestCriterion({"acc/retain": "highest"})
    with pytest.raises(ValueError, match="non-empty dict"):
        BestCriterion({})
    with pytest.raises(ValueError, match=r"reads \['acc/test'\].*recorded: \['acc/forget', 'acc/retain'\]"):
        select_best(records((1, 2)), {"acc/test": "max"})


def test_the_loop_keeps_the_params_of_the_best_record(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    digits = fl.load_dataset("digits")
    model, params, buffers = fl.functional(net, mean=digits.mean, std=digits.std)
    loader = fl.TensorLoader(digits.train_x, digits.train_y, 64, seed=0)
    evals = {"test": fl.TensorLoader(digits.test_x, digits.test_y, 512, shuffle=False)}
    # a noisy high-learning-rate run, so the test accuracy goes up and down
    criterion = {"acc/test": closest_to(80.0), "step": "min"}
    result = fl.train(model, params, buffers, loader, steps=30, optimizer=fl.sgd(2.0), eval_loaders=evals,
                      eval_every=1, best=criterion, run_dir=tmp_path, progress=False)
    index = select_best(result.history.evals, criterion)
    assert result.best_record == result.history.evals[index] == result.history.best
    step = result.best_record["step"]
    assert 0 < step < 30
    replay = fl.train(model, params, buffers, loader, steps=step, optimizer=fl.sgd(2.0), progress=False)
    assert all(torch.equal(result.best_params[k], replay.params[k]) for k in params)
    on_disk = load_checkpoint(tmp_path / "best.safetensors", params, buffers)
    assert on_disk.metadata["record"] == result.best_record
    assert all(torch.equal(on_disk.params[k], replay.params[k]) for k in params)


def test_no_criterion_no_best():
    model, params, buffers = fl.functional(nn.Linear(4, 2))
    data = [(torch.ones(3, 4), torch.tensor([0, 1, 0]))]
    result = fl.train(model, params, buffers, data, steps=2, eval_loaders={"train": data}, progress=False)
    assert result.best_params is None and result.best_record is None
