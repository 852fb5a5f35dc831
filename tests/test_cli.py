"""The ``funlearn`` command: the demo end to end (reduced), train -> unlearn -> evaluate, and bad options."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from funlearn.cli import build_parser, main

FAST = ["--train-epochs", "2", "--epochs", "1", "--no-progress"]


def _report(path):
    return {row["method"]: row for row in json.loads(path.read_text())["rows"]}


def _check_gaps(rows):
    """Each method's gaps and Avg. Gap, recomputed from the table's own columns (SalUn's definition)."""
    retrain = rows["retrain"]
    for name, row in rows.items():
        gaps = [abs(row[k] - retrain[k]) for k in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")]
        assert row["gap_forget"] == pytest.approx(gaps[0]) and row["gap_mia"] == pytest.approx(gaps[3])
        assert row["avg_gap"] == pytest.approx(sum(gaps) / 4), name
        assert row["unlearn_acc"] == pytest.approx(100 - row["forget_acc"])


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_its_reports(tmp_path, capsys):
    out, cache = tmp_path / "demo", tmp_path / "cache"
    argv = ["demo", "--methods", "finetune,neggrad_plus,fisher_forget", *FAST, "-o", str(out), "--cache-dir", str(cache)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("AvgGap") == 2 and "neggrad_plus" in printed and "demo finished" in printed
    for scenario in ("random_0.1", "class_1"):
        for name in ("report.md", "report.csv", "report.json", "report.txt", "curves.png", "tradeoff.png"):
            assert (out / scenario / name).stat().st_size > 0, (scenario, name)
        assert (out / scenario / "runs" / "neggrad_plus" / "history.json").is_file()
        rows = _report(out / scenario / "report.json")
        assert list(rows) == ["original", "retrain", "finetune", "neggrad_plus", "fisher_forget"]
        _check_gaps(rows)
        assert rows["retrain"]["avg_gap"] == 0 and rows["retrain"]["time_fraction"] == 1
    assert (out / "summary.md").read_text().startswith("# funlearn demo\n\nCommand: `funlearn demo --methods")
    class_rows = _report(out / "class_1" / "report.json")
    assert class_rows["retrain"]["forget_acc"] == 0 and class_rows["retrain"]["test_forget_acc"] == 0
    assert min(p.name for p in cache.iterdir()).startswith("original-digits-")  # one original, two retrains
    assert len(list(cache.iterdir())) == 3


@pytest.mark.slow
def test_train_unlearn_evaluate_on_saved_params(tmp_path, capsys):
    cache = ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(["train", "--epochs", "2", "-o", str(tmp_path / "train"), *cache]) == 0
    assert "test accuracy" in capsys.readouterr().out
    original = tmp_path / "train" / "original.safetensors"
    unlearn = ["unlearn", "--method", "neggrad_plus", "--forget", "class:1", "--params", str(original),
               "--lr", "0.02", "-o", str(tmp_path / "unlearn"), *cache]  # fmt: skip
    assert main(unlearn) == 0
    unlearned = _report(tmp_path / "unlearn" / "report.json")
    assert list(unlearned) == ["original", "retrain", "neggrad_plus"]
    assert "neggrad_plus: lr 0.02, 1 epoch" in (tmp_path / "unlearn" / "report.md").read_text()
    saved = tmp_path / "unlearn" / "neggrad_plus.safetensors"
    assert main(["evaluate", "--params", str(saved), str(original), "-o", str(tmp_path / "eval"), *cache]) == 0
    evaluated = _report(tmp_path / "eval" / "report.json")  # the scenario is read from the unlearned file
    assert list(evaluated) == ["retrain", "neggrad_plus", "original"]
    for name in ("retrain", "neggrad_plus", "original"):  # recomputed from the files: the same numbers
        for key in ("retain_acc", "forget_acc", "test_acc", "test_forget_acc", "mia_efficacy", "avg_gap"):
            assert evaluated[name][key] == pytest.approx(unlearned[name][key]), (name, key)
    with pytest.raises(SystemExit):  # a stored recipe cannot be changed: the retrain must match it
        main(["unlearn", "--method", "finetune", "--params", str(original), "--train-epochs", "5", *cache])
    assert "cannot change the recipe" in capsys.readouterr().err


BAD_OPTIONS = [
    (["compare", "--methods", "finetune,foo"], ["--methods", "unknown method 'foo'", "finetune, neggrad, neggrad_plus"]),
    (["unlearn", "--method", "bar"], ["--method", "unknown method 'bar'", "salun"]),
    (["compare", "--forget", "half:0.5"], ["--forget", "unknown kind 'half'", '"random:0.1"', '"class:3"']),
    (["compare", "--forget", "random:1.5"], ["--forget", "strictly between 0 and 1"]),
    (["compare", "--dataset", "imagenet"], ["--dataset", "unknown dataset 'imagenet'", "digits, fashion_mnist"]),
    (["demo", "--epochs", "-1"], ["--epochs", "positive integer", "'-1'"]),
    (["demo", "--epochs", "1.5"], ["--epochs", "positive integer"]),
    (["train", "--epochs", "0"], ["--epochs", "positive integer"]),
    (["compare", "--lr", "-0.1"], ["--lr", "positive number"]),
    (["compare", "--lr", "influence=0.1"], ["--lr", "closed-form method", "finetune"]),
    (["compare", "--compile", "maybe"], ["--compile", "invalid choice", "'auto', 'true', 'false'"]),
    (["compare", "--model", "resnet9000"], ["--model", "unknown model 'resnet9000'", "small_cnn"]),
    (["demo", "--bogus"], ["unrecognized arguments: --bogus"]),
]


@pytest.mark.parametrize("argv, needles", BAD_OPTIONS, ids=[" ".join(argv) for argv, _ in BAD_OPTIONS])
def test_bad_options_name_the_option_and_the_valid_values(argv, needles, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: funlearn")
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize("argv, needles", [
    (["compare", "--forget", "class:12"], ["argument --forget", "class 12 does not exist", "classes present: 0..9"]),
    (["compare", "--model", "lenet"], ["argument --model", "at least 12x12"]),
])  # fmt: skip
def test_settings_that_cannot_work_fail_before_any_training(argv, needles, tmp_path, capsys):
    cache = tmp_path / "cache"
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--cache-dir", str(cache), "--no-progress", "-o", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert all(n in err for n in needles), err
    assert not cache.exists() and not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_help_explains_every_option():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert set(subcommands) == {"demo", "train", "unlearn", "compare", "evaluate"}
    for name, sub in subcommands.items():
        for action in sub._actions:
            assert action.help, f"funlearn {name} {action.option_strings}: no help"
        for option in ("--dataset", "--seed", "--device", "--output", "--cache-dir"):
            assert option in sub.format_help(), (name, option)
    for name in ("demo", "unlearn", "compare"):
        text = subcommands[name].format_help()
        for option in ("--model", "--epochs", "--lr", "--batch-size", "--compile", "--forget", "--data-root"):
            assert option in text, (name, option)


def test_the_module_entry_point_exits_with_the_usage_error():
    bad = subprocess.run([sys.executable, "-m", "funlearn", "compare", "--methods", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "argument --methods: unknown method 'nope'" in bad.stderr
