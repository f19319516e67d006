"""Monitoring samples from the gateway: what analysis reads is the same with sampling on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gwmodels
import numpy as np
import orjson
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment, serve
from numpy.testing import assert_allclose

from abflow.security.roles import Role
from abflow.serving.settings import GatewayConfig
from abflow.spec import MonitoringSpec

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


async def test_samples_reach_the_store_through_the_durable_event_log(tmp_path: Path) -> None:
    """The real wiring: journal, shipper and SQLite store; every sampled row is stored once,
    with the features sent and the score answered, under the variant that served it."""
    from abflow.serving import GatewaySettings, create_app
    from abflow.serving.demo_models import N_FEATURES
    from abflow.serving.settings import demo_config
    from abflow.store import EventStore
    from abflow.store.monitoring import sample_windows, window_samples

    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    settings = GatewaySettings(store_url=url, journal_dir=tmp_path / "journal", auth_enabled=False)
    spec = demo_config().experiments[0]
    spec = spec.model_copy(update={"monitoring": MonitoringSpec(sample_rate=1.0)})
    app = create_app(settings, config=GatewayConfig(experiments=[spec], default_experiment="demo"))
    sent: set[tuple[str, tuple[float, ...], float]] = set()
    async with serve(app) as client:
        for i in range(30):
            features = [round(0.1 * i + j, 3) for j in range(N_FEATURES)]
            response = await client.post(
                "/v1/predict", json={"unit_id": f"user-{i}", "features": features}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            sent.add((body["variant"], tuple(features), body["prediction"]))
    stored: set[tuple[str, tuple[float, ...], float]] = set()
    with EventStore.open(url) as store:
        assert store.count_events("sample", "demo") == 30
        assert store.count_events("prediction", "demo") == 30
        for start in sample_windows(store, "demo"):
            for variant, sample in window_samples(store, "demo", start, 1000).items():
                for features, score in zip(sample.features, sample.scores, strict=True):
                    assert score is not None
                    stored.add((variant, tuple(features), score))
    assert stored == sent
