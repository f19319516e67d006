"""docs/analysis.md: its Python example runs in an empty folder and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_doc_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert BLOCKS
    monkeypatch.chdir(tmp_path)
    for index, block in enumerate(BLOCKS):
        exec(compile(block, f"{DOC.name}[{index}]", "exec"), {})
    assert "control" in capsys.readouterr().out
