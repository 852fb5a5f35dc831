"""The README's evaluation examples run offline, as written, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Evaluation against retraining"


def evaluation_blocks() -> list[str]:
    text = README.read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    section = text[start : None if end < 0 else end]
    return re.findall(
        r"^```python\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE
    )  # "python no-run" is skipped


def test_the_evaluation_examples_run(tmp_path, monkeypatch):
    blocks = evaluation_blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the examples write retrain-cache/ and results/ here
    namespace: dict = {"__name__": "__readme__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md evaluation example {i}", "exec"), namespace)  # noqa: S102
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "curves.png", "report.csv", "report.json", "report.md", "report.txt", "tradeoff.png",
    ]  # fmt: skip
    assert len(list((tmp_path / "retrain-cache").iterdir())) == 1
