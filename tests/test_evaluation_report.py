"""Results tables render (console, Markdown) and round-trip (CSV, JSON); plots write PNGs."""

from __future__ import annotations

import json

import pytest

import funlearn as fl

RETRAIN = fl.UnlearningEvaluation(
    retain_acc=100.0, forget_acc=94.76, unlearn_acc=5.24, test_acc=94.26, mia_efficacy=12.88,
    gap_forget=0.0, gap_retain=0.0, gap_test=0.0, gap_mia=0.0, avg_gap=0.0, time_s=2597.4, time_fraction=1.0,
)  # fmt: skip
METHODS = {
    "salun": fl.UnlearningEvaluation(
        retain_acc=99.62, forget_acc=97.15, unlearn_acc=2.85, test_acc=93.93, mia_efficacy=14.39,
        gap_forget=2.39, gap_retain=0.38, gap_test=0.33, gap_mia=1.51, avg_gap=1.1525, time_s=159.6,
        time_fraction=159.6 / 2597.4,
    ),
    "l1_sparse": {"retain_acc": 97.74, "forget_acc": 95.81, "test_acc": 91.59, "mia_efficacy": 9.84, "gap_forget": 1.05,
                  "gap_retain": 2.26, "gap_test": 2.67, "gap_mia": 3.04, "avg_gap": 2.255, "time_s": 141.6},
}  # fmt: skip
ORIGINAL = {"retain_acc": 100.0, "forget_acc": 100.0, "test_acc": 94.5, "mia_efficacy": 2.0, "gap_forget": 5.24,
            "gap_retain": 0.0, "gap_test": 0.24, "gap_mia": 10.88, "avg_gap": 4.09}  # fmt: skip


@pytest.fixture
def report() -> fl.Report:
    return fl.make_report(
        METHODS, original=ORIGINAL, retrained=RETRAIN, title="CIFAR-10, random 10%", notes=["cmd: x"]
    )


def test_rows_are_original_retrain_then_methods_and_empty_columns_are_dropped(report):
    assert [r["method"] for r in report.rows] == ["original", "retrain", "salun", "l1_sparse"]
    assert "test_forget_acc" not in report.columns and "zrf" not in report.columns
    assert report.columns[:4] == ["retain_acc", "forget_acc", "test_acc", "mia_efficacy"]
    assert {"avg_gap", "time_s", "time_fraction"} <= set(report.columns)


def test_markdown_table_parses(report):
    lines = [line for line in report.markdown().splitlines() if line.startswith("|")]
    header, separator, *rows = lines
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells == ["method", *(fl.METRICS[c].label for c in report.columns)]
    assert separator == "|" + "|".join([":---"] + ["---:"] * len(report.columns)) + "|"
    assert len(rows) == 4
    parsed = {
        r.strip("|").split("|")[0].strip(): [c.strip() for c in r.strip("|").split("|")[1:]] for r in rows
    }
    assert set(parsed) == {"original", "retrain", "salun", "l1_sparse"}
    salun = dict(zip(report.columns, parsed["salun"], strict=True))
    assert salun["retain_acc"] == "99.62" and salun["avg_gap"] == "1.15" and salun["time_fraction"] == "0.061"
    assert (
        dict(zip(report.columns, parsed["l1_sparse"], strict=True))["time_fraction"] == "-"
    )  # missing value
    assert "MIA: MIA-efficacy" in report.markdown() and "target: the retrained model" in report.markdown()


def test_console_table_is_fixed_width(report):
    text = report.console()
    lines = text.splitlines()
    assert lines[0] == "CIFAR-10, random 10%"
    table = lines[1:7]
    assert set(table[1]) <= {"-", " "}
    ends = {len(line) for line in table}
    assert len(ends) == 1  # every row as wide as the header: columns line up
    assert table[3].startswith("retrain ") and "2597.40" in table[3]
    assert str(report) == text


def test_csv_and_json_round_trip(report, tmp_path):
    again = fl.Report.from_json(report.json())
    assert again == report
    json.loads(report.json())  # strict JSON
    from_csv = fl.Report.from_csv(report.csv())
    assert from_csv.columns == report.columns
    for row, original in zip(from_csv.rows, report.rows, strict=True):
        assert row == {"method": original["method"], **{c: original.get(c) for c in report.columns}}
    paths = report.save(tmp_path, "table")
    assert sorted(paths) == ["csv", "json", "md", "txt"]
    assert fl.Report.from_json(paths["json"].read_text()) == report
    assert paths["md"].read_text() == report.markdown()


def test_make_report_rejects_bad_rows():
    with pytest.raises(ValueError, match="reserved"):
        fl.make_report({"retrain": RETRAIN}, retrained=RETRAIN)
    with pytest.raises(ValueError, match="finite"):
        fl.make_report({"x": {"retain_acc": float("nan")}})
    with pytest.raises(ValueError, match="in no row"):
        fl.make_report(METHODS, columns=["retain_acc", "bogus"])
    with pytest.raises(ValueError, match="at least one row"):
        fl.make_report({})


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_plots_write_png_files(report, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install funlearn[plot])")
    history = [
        {"epoch": 0, "acc/retain": 99.0, "acc/forget": 99.0, "acc/test": 94.0},
        {"step": 5, "loss": 0.3},  # a per-step record without accuracies is skipped
        {"epoch": 1, "acc/retain": 99.5, "acc/forget": 96.0, "acc/test": 93.8},
    ]
    engine_history = fl.History(evals=history)
    curves = fl.plot_curves({"salun": engine_history, "ft": history[:1]}, tmp_path / "curves.png",
                            reference={"FA": 94.76}, title="t")  # fmt: skip
    assert _is_png(curves)
    tradeoff = fl.plot_tradeoff(report, tmp_path / "tradeoff.png")
    assert _is_png(tradeoff)
    assert _is_png(fl.plot_tradeoff(METHODS, tmp_path / "sub" / "tradeoff2.png", y=["gap_test"]))


def test_plots_name_what_is_missing(report, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install funlearn[plot])")
    with pytest.raises(ValueError, match="acc/retain"):
        fl.plot_curves({"a": [{"epoch": 0, "retain": 1.0}]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'epoch'"):
        fl.plot_curves(
            {"a": [{"step": 0, "acc/retain": 1.0, "acc/forget": 1.0, "acc/test": 1.0}]}, tmp_path / "x.png"
        )
    with pytest.raises(ValueError, match="lack"):
        fl.plot_tradeoff({"a": {"gap_forget": 1.0}}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
