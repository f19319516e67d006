"""A metric whose sums overflow a double fails alone. One outcome of 1.5e154 reached the store
(the gateway now bounds values; a loader or a direct write does not) and every later
analysis of the experiment failed with "numerator_sum_squares must be finite", the results
route with a 422 that blamed the request; a quantile of such values was a 500 on SQLite."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from abflow.store import EventStore
from specs import two_arm_spec

KEY = "checkout"
METRICS: list[dict[str, Any]] = [
    {"name": "revenue", "kind": "mean", "event": "revenue", "role": "primary"},
    {"name": "bought", "kind": "conversion", "event": "buy", "role": "secondary"},
    {
        "name": "revenue_by_country",
        "kind": "mean",
        "event": "revenue",
        "role": "secondary",
        "post_stratify": ["country"],
    },
    {"name": "revenue_p50", "kind": "quantile", "event": "revenue", "quantile": 0.5},
    {"name": "bought_p50", "kind": "quantile", "event": "buy", "quantile": 0.5},
]


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url, upgrade=True) as store:
        store.register_experiment(two_arm_spec(metrics=METRICS))
        phase = store.current_phase(KEY)
        start = phase.started_at + 1
        exposures, outcomes = [], []
        for i in range(40):
            variant = ("control", "treatment")[i % 2]
            attributes = orjson.dumps({"country": ("NL", "DE")[i % 4 // 2]}).decode()
            exposures.append(
                {"event_id": f"x{i}", "ts": start + i, "experiment_key": KEY,
                 "phase": phase.phase, "unit_id": f"u{i}", "variant": variant,
                 "attributes_json": attributes}
            )  # fmt: skip
            revenue = 1.5e154 if i == 0 else float(i % 7)
            outcomes.append(
                {"event_id": f"r{i}", "ts": start + 100 + i, "unit_id": f"u{i}",
                 "name": "revenue", "value": revenue}
            )  # fmt: skip
            if i % 3 == 0:
                outcomes.append(
                    {"event_id": f"b{i}", "ts": start + 200 + i, "unit_id": f"u{i}",
                     "name": "buy", "value": 1.0}
                )  # fmt: skip
        store.write_events("exposure", exposures)
        store.write_events("outcome", outcomes)
    return url


def test_the_overflowing_metric_fails_alone_and_the_others_are_computed(tmp_path: Path) -> None:
    from abflow.cli.main import app

    url = _store(tmp_path)
    result = CliRunner().invoke(
        app, ["analyze", KEY, "--store", url, "--format", "json", "--by", "country"]
    )
    assert result.exit_code == 0, result.output
    metrics = {m["name"]: m for m in orjson.loads(result.output)["metrics"]}
    for name in ("revenue", "revenue_by_country", "revenue_p50"):
        [comparison] = metrics[name]["comparisons"]
        assert comparison["error_code"] == "non_finite_values", name
        assert comparison["p_value"] is None
        assert [v["n"] for v in metrics[name]["values"]] == [20, 20]
    [bought] = metrics["bought"]["comparisons"]
    assert bought["error_code"] is None
    assert math.isfinite(bought["p_value"])
    assert metrics["bought"]["values"][0]["value"] == 7 / 20  # units 0, 6, 12, 18, 24, 30, 36
    assert [v["value"] for v in metrics["bought_p50"]["values"]] == pytest.approx(
        [1.0, 1.0], abs=0.01
    )
