"""SRM with too few units (issue #14, item 11): the test is undefined, so every output says
"not enough data", never "healthy" (it printed ``p-value nan (split healthy)``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from abflow.spec import parse_experiment
from abflow.stats.srm import MIN_EXPECTED_COUNT, srm_test
from abflow.store import EventStore

KEY = "lonely"
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "control", "model": "models:/m/1"},
        {"name": "treatment", "model": "models:/m/2"},
    ],
    "weights": [0.5, 0.5],
    "metrics": [{"name": "converted", "kind": "conversion", "event": "buy", "role": "primary"}],
}


@pytest.mark.parametrize(
    ("counts", "status", "code"),
    [
        ([1, 0], "not_enough_data", "too_few_units"),  # one unit: expected 0.5 per arm
        ([0, 0], "not_enough_data", "no_units"),
        ([9, 0], "not_enough_data", "too_few_units"),  # expected 4.5 < 5 per arm
        ([30, 0], "mismatch", None),  # chi-square 30: p = 4e-8
        ([50, 50], "healthy", None),
    ],
)
def test_srm_status_names_an_undefined_test(counts: list[int], status: str, code: str) -> None:
    result = srm_test(counts, [0.5, 0.5])
    assert result.status == status
    assert result.error_code == code
    assert math.isnan(result.p_value) is (status == "not_enough_data")
    assert MIN_EXPECTED_COUNT == 5.0


def _store_with_units(tmp_path: Path, units: int) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url, upgrade=True) as store:
        store.register_experiment(parse_experiment(SPEC))
        phase = store.current_phase(KEY).phase
        rows = [
            {"event_id": f"x{i}", "ts": store.current_phase(KEY).started_at + 1 + i,
             "experiment_key": KEY, "phase": phase, "unit_id": f"u{i}",
             "variant": "control", "attributes_json": None}
            for i in range(units)
        ]  # fmt: skip
        store.write_events("exposure", rows)
    return url


def _analyze(url: str, output_format: str) -> str:
    from abflow.cli.main import app

    result = CliRunner().invoke(
        app, ["analyze", KEY, "--store", url, "--format", output_format], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_one_unit_says_not_enough_data_everywhere(tmp_path: Path) -> None:
    url = _store_with_units(tmp_path, 1)
    srm = orjson.loads(_analyze(url, "json"))["srm"]
    assert srm == {
        "p_value": None,
        "alpha": 0.001,
        "is_mismatch": False,
        "status": "not_enough_data",
        "error_code": "too_few_units",
    }
    table = _analyze(url, "table")
    assert "SRM not enough data (too_few_units)" in table
    assert "healthy" not in table
    markdown = _analyze(url, "markdown")
    assert "SRM **not enough data** (too_few_units)" in markdown
    assert "healthy" not in markdown
    html = _analyze(url, "html")
    assert "SRM check: not enough data yet to test the split." in html
    assert "the split matches the weights" not in html


def test_enough_units_keep_the_p_value_and_the_word_healthy(tmp_path: Path) -> None:
    url = _store_with_units(tmp_path, 1)
    with EventStore.open(url) as store:
        phase = store.current_phase(KEY)
        rows = [
            {"event_id": f"y{i}", "ts": phase.started_at + 10 + i, "experiment_key": KEY,
             "phase": phase.phase, "unit_id": f"v{i}",
             "variant": "control" if i % 2 else "treatment", "attributes_json": None}
            for i in range(39)
        ]  # fmt: skip
        store.write_events("exposure", rows)
    srm = orjson.loads(_analyze(url, "json"))["srm"]
    assert srm["status"] == "healthy"
    assert srm["p_value"] == pytest.approx(1.0)  # 20 and 20 units
    assert "(split healthy)" in _analyze(url, "table")
