"""Monitoring samples from the gateway: what analysis reads is the same with sampling on."""

from __future__ import annotations

from typing import Any

import gwmodels
import numpy as np
import orjson
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from numpy.testing import assert_allclose

from abflow.security.roles import Role

pytestmark = pytest.mark.anyio

VOLATILE = {"event_id", "ts", "latency_ms"}
"""Columns that differ between two runs of the same requests whatever sampling does."""


async def run_requests(
    make_client: AppFactory,
    events: MemoryEvents,
    token: str,
    rows: np.ndarray,
    monitoring: dict[str, Any],
) -> dict[str, list[dict[str, Any]]]:
    client = await make_client(experiment(monitoring=monitoring))
    for i, row in enumerate(rows.tolist()):
        response = await client.post(
            "/v1/predict",
            json={"unit_id": f"u{i}", "features": row, "request_id": f"req-{i}"},
            headers=auth(token),
        )
        assert response.status_code == 200, response.text
    return {kind: [dict(r) for r in found] for kind, found in events.rows.items()}


def stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


async def test_sampling_changes_nothing_analysis_reads(
    make_client: AppFactory,
    events: MemoryEvents,
    tokens: dict[Role, str],
    rng: np.random.Generator,
) -> None:
    rows = rng.normal(size=(60, gwmodels.N_FEATURES)).round(6)
    off = await run_requests(make_client, events, tokens[Role.SERVICE], rows, {"sample_rate": 0})
    for found in events.rows.values():
        found.clear()
    on = await run_requests(make_client, events, tokens[Role.SERVICE], rows, {"sample_rate": 1})
    assert off["sample"] == []
    assert len(on["sample"]) == 60
    for kind in ("exposure", "prediction", "outcome"):
        assert stable(on[kind]) == stable(off[kind]), kind
    # Each sample is its request's row and served score, under the served variant.
    served = {p["request_id"]: p for p in on["prediction"]}
    for sample in on["sample"]:
        prediction = served[sample["request_id"]]
        index = int(sample["request_id"].split("-")[1])
        assert_allclose(orjson.loads(sample["features_json"]), rows[index])
        assert sample["variant"] == prediction["variant"]
        assert sample["score"] == prediction["score"]
        assert sample["model_version"] == prediction["model_version"]
    # The models' own scores, computed here: the sample holds what each variant answered.
    models = {"control": gwmodels.control(), "treatment": gwmodels.challenger()}
    for sample in on["sample"]:
        features = np.array([orjson.loads(sample["features_json"])])
        expected = models[sample["variant"]].predict_proba(features)[0, 1]
        assert_allclose(sample["score"], expected)
