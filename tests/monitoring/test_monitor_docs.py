"""docs/monitoring.md: its ``python`` blocks run in order and print what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)


def test_doc_examples_print_what_the_page_shows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert len(BLOCKS) == 2
    namespace: dict[str, object] = {}
    for index, block in enumerate(BLOCKS):
        exec(compile(block, f"{DOC.name}[{index}]", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "  - alert: AbflowPredictionDrift"
    assert f"prints `{out[0]}`" in TEXT
    shown = re.search(r"\nprints\n\n```text\n(.*?)```", TEXT, flags=re.DOTALL)
    assert shown is not None
    assert out[1:] == shown.group(1).splitlines()
    assert (tmp_path / "abflow-alerts.yaml").exists()
