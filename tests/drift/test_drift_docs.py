"""docs/drift.md: its ``python`` blocks run in order and print what the page says they print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from abflow.drift import MEASURES

DOC = Path(__file__).resolve().parents[2] / "docs" / "drift.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)


def test_doc_examples_print_what_the_page_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(BLOCKS) == 3
    namespace: dict[str, object] = {}
    for index, block in enumerate(BLOCKS):
        exec(compile(block, f"{DOC.name}[{index}]", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    shown = re.search(r"prints\n\n```text\n(.*?)```", TEXT, flags=re.DOTALL)
    assert shown is not None
    assert out[:3] == shown.group(1).splitlines()
    assert out[3] == "PSI 0.082, drifted: False"
    assert "prints `PSI 0.082, drifted: False`" in TEXT
    assert out[4] == "0.3466"
    assert out[5:7] == ["2 0.1212 True", "e 0.1009 True"]
    assert "prints `2 0.1212 True` and `e 0.1009 True`" in TEXT


def test_the_measures_table_states_the_codes_thresholds() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \|.*?\| (p < [\d.]+|≥ [\d.]+) \|", TEXT, re.MULTILINE))
    assert set(rows) == {m.value for m in MEASURES}
    for method, measure in MEASURES.items():
        rule = "p <" if measure.is_test else "≥"
        assert rows[method.value] == f"{rule} {measure.default_threshold:g}", method
