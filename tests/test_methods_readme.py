"""The README's unlearning-methods examples (the composition example first) run offline, as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Unlearning methods"


def methods_section_blocks() -> list[str]:
    text = README.read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    section = text[start : None if end < 0 else end]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)  # "python no-run" is skipped


def test_composition_example_is_at_most_ten_lines():
    block = methods_section_blocks()[0]
    lines = block[block.index("# a new method") :].splitlines()[1:]
    composition = lines[: next(i for i, line in enumerate(lines) if not line.strip())]
    assert 1 <= len(composition) <= 10


@pytest.mark.slow
def test_readme_methods_examples_run(capsys):
    namespace = {"__name__": "__readme__"}
    for index, code in enumerate(methods_section_blocks()):
        exec(compile(code, f"README.md methods example {index}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "acc/forget" in out and "boundary_shrink" in out
    last = namespace["unlearning"].history.evals[-1]
    assert last["acc/forget"] < 5 and last["acc/retain"] > 95
