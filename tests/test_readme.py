"""Every ```python block of the README runs as written, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The bodies of fenced blocks whose info string is exactly ``python`` (``python no-run`` is skipped)."""
    return [m.group(1) for m in BLOCK.finditer(text)]


def test_readme_has_runnable_examples():
    assert len(python_blocks(README.read_text())) >= 3


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(python_blocks(README.read_text()), 1):
        code = compile(block, f"README.md python block {i}", "exec")
        exec(code, namespace)  # noqa: S102 - the project's own README, the point of the test
