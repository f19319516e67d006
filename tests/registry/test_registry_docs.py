"""docs/models.md: its ``python`` blocks run, in order, as one script in an empty folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_doc_examples_run_in_order(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    empty_registry_db: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("feast")
    assert len(BLOCKS) >= 8
    monkeypatch.chdir(tmp_path)
    # The embedded default registry, pre-migrated so the test does not pay for the schema.
    (tmp_path / ".abflow").mkdir()
    shutil.copy(empty_registry_db, tmp_path / ".abflow" / "mlflow.db")
    namespace: dict[str, object] = {}
    for index, block in enumerate(BLOCKS):
        exec(compile(block, f"{DOC.name}[{index}]", "exec"), namespace)
    out = capsys.readouterr().out
    assert "models:/fraud/1 models:/fraud/2" in out
    assert "refusing to serve it" in out
    assert "feature 'amount' is missing and has no default" in out
    assert (tmp_path / ".abflow" / "mlartifacts").is_dir()
