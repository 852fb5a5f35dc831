"""Every ```python block of the README runs as written, in order, in one namespace.

Blocks fenced ```python no-run are shown but not run (they need data files or long runs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The bodies of fenced blocks whose info string is exactly ``python``."""
    return [m.group(1) for m in BLOCK.finditer(text)]


def section(heading: str) -> str:
    """The README text from ``heading`` to the next ``## `` heading."""
    text = README.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : None if end < 0 else end]


def test_every_area_has_runnable_examples():
    for heading, at_least in [
        ("## Quick start", 1), ("## The functional core", 2), ("## Gradient transformations", 1),
        ("## Models", 1), ("## Data: forgetting scenarios and datasets", 4), ("## Training and the engine", 3),
        ("## Unlearning methods", 2), ("## Second-order toolkit", 3), ("## Evaluation against retraining", 4),
        ("## Coming from torchunlearn", 1),
    ]:  # fmt: skip
        assert len(python_blocks(section(heading))) >= at_least, heading


def test_composition_example_is_at_most_ten_lines():
    block = python_blocks(section("## Unlearning methods"))[0]
    lines = block[block.index("# a new method") :].splitlines()[1:]
    composition = lines[: next(i for i, line in enumerate(lines) if not line.strip())]
    assert 1 <= len(composition) <= 10


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text()), 1):
        code = compile(block, f"README.md python block {i}", "exec")
        exec(code, namespace)  # noqa: S102 - the project's own README, the point of the test
    out = capsys.readouterr().out
    assert "acc/test" in out  # the engine examples print their history
    last = namespace["unlearning"].history.evals[-1]  # the composed method of "Unlearning methods"
    assert last["acc/forget"] < 5 and last["acc/retain"] > 95
    assert {p.name for p in (tmp_path / "results").iterdir()} >= {"report.md", "report.csv", "curves.png"}
