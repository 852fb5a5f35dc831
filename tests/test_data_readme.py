"""The runnable examples of the README's data section execute offline, as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Data: forgetting scenarios and datasets"


def data_section_blocks() -> list[str]:
    text = README.read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    section = text[start : None if end < 0 else end]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)  # "python no-run" is skipped


def test_the_section_has_runnable_examples():
    assert len(data_section_blocks()) >= 4


@pytest.mark.parametrize("index", range(len(data_section_blocks())))
def test_readme_data_example_runs(index):
    code = data_section_blocks()[index]
    exec(compile(code, f"README.md data example {index}", "exec"), {"__name__": "__readme__"})
