"""The default wiring: create_app(settings) on a real SQLite store with the durable event log."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import serve

from abflow.serving import GatewaySettings, create_app
from abflow.serving.demo_models import N_FEATURES
from abflow.store import EventStore

pytestmark = pytest.mark.anyio


async def test_demo_gateway_logs_events_into_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    settings = GatewaySettings(store_url=url, journal_dir=tmp_path / "journal", auth_enabled=False)
    app = create_app(settings)
    request_ids = []
    async with serve(app) as client:
        for i in range(20):
            response = await client.post(
                "/v1/predict", json={"unit_id": f"user-{i}", "features": [0.5] * N_FEATURES}
            )
            assert response.status_code == 200, response.text
            request_ids.append(response.json()["request_id"])
        outcome = await client.post(
            "/v1/outcomes",
            json={"outcomes": [{"request_id": request_ids[0], "name": "converted", "value": 1}]},
        )
        assert outcome.status_code == 202
    with EventStore.open(url) as store:
        assert store.count_events("exposure", "demo") == 20
        assert store.count_events("prediction", "demo") == 20
        assert store.count_events("outcome") == 1
        [version] = store.list_experiments()
        assert version.key == "demo"
        assert version.phase == 1


def test_each_worker_claims_its_own_journal_slot(tmp_path: Path) -> None:
    from abflow.serving.wiring import claim_event_log

    first = claim_event_log(None, tmp_path)
    second = claim_event_log(None, tmp_path)
    try:
        assert first.journal_dir == tmp_path / "worker-0"
        assert second.journal_dir == tmp_path / "worker-1"
    finally:
        second.close()
    again = claim_event_log(None, tmp_path)  # a restarted worker takes the free slot back
    try:
        assert again.journal_dir == tmp_path / "worker-1"
    finally:
        again.close()
        first.close()


async def test_registering_a_spec_over_http_is_audited_with_the_token_name(
    tmp_path: Path,
) -> None:
    from abflow.security.tokens import create_token
    from abflow.serving.wiring import StoreTokenStore

    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    with EventStore.open(url) as store:
        secret, _ = create_token(StoreTokenStore(store), "alice", "experimenter")
    settings = GatewaySettings(store_url=url, journal_dir=tmp_path / "journal")
    spec = {
        "key": "audited",
        "variants": [
            {"name": "a", "model": "python:abflow.serving.demo_models:champion"},
            {"name": "b", "model": "python:abflow.serving.demo_models:challenger"},
        ],
        "weights": [0.5, 0.5],
    }
    async with serve(create_app(settings)) as client:
        response = await client.post(
            "/v1/experiments", json=spec, headers={"authorization": f"Bearer {secret}"}
        )
        assert response.status_code == 201, response.text
    with EventStore.open(url) as store:
        [entry] = store.audit_entries("audited")
        assert (entry.actor, entry.action) == ("token:alice", "experiment.registered")
        assert store.verify_audit() == []
