"""The README's engine examples run offline, as written, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Training and the engine"


def engine_section_blocks() -> list[str]:
    text = README.read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    section = text[start : None if end < 0 else end]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)  # "python no-run" is skipped


def test_readme_engine_examples_run(capsys):
    blocks = engine_section_blocks()
    assert len(blocks) >= 3
    namespace = {"__name__": "__readme__"}
    for index, code in enumerate(blocks):
        exec(compile(code, f"README.md engine example {index}", "exec"), namespace)
    assert "acc/test" in capsys.readouterr().out
