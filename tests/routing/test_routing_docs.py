"""docs/routing.md: its ``python`` blocks run in order and print what the page shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
SHOWN = re.findall(r"prints\n\n```text\n(.*?)```", TEXT, flags=re.DOTALL)


def test_doc_examples_print_what_the_page_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(BLOCKS) == len(SHOWN) == 3
    namespace: dict[str, object] = {}
    for index, (block, shown) in enumerate(zip(BLOCKS, SHOWN, strict=True)):
        exec(compile(block, f"{DOC.name}[{index}]", "exec"), namespace)
        assert capsys.readouterr().out.splitlines() == shown.splitlines()
    assert SHOWN[0].splitlines() == ["0.4483", "[0.2064, 0.7887]"]
    assert SHOWN[1].splitlines() == ["True", "condition"]
    assert SHOWN[2].splitlines() == ["b None", "b sticky {'emoji-test__0': 'b'}"]


def test_doc_counts_match_the_run_vector_test() -> None:
    assert "57 of the 73 `run`" in TEXT
    assert "The other 16 are skipped" in TEXT
    assert "all 13 of GrowthBook's\n`stickyBucket` vectors" in TEXT
