"""Every gateway setting is documented in docs/gateway.md's settings table, and every row
there names a real setting: the table is what operators read to configure a gateway."""

from __future__ import annotations

import re
from pathlib import Path

from abflow.serving.settings import GatewaySettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def _table_rows() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("| Setting (`ABFLOW_…`)")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1])
    return rows


def test_every_setting_has_a_row_and_every_row_a_setting() -> None:
    documented = {name for row in _table_rows() for name in re.findall(r"`([A-Z_]+)`", row)}
    settings = {name.upper() for name in GatewaySettings.model_fields}
    assert settings - documented == set(), "settings missing from docs/gateway.md"
    assert documented - settings == set(), "rows of docs/gateway.md that are no setting"
