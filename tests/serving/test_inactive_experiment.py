"""A paused experiment (``active: false``) through the gateway: listed as paused, the
control model for everyone but the forced units, and no exposure for them."""

from __future__ import annotations

import gwmodels
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from numpy.testing import assert_allclose

from abflow.security.roles import Role

pytestmark = pytest.mark.anyio


async def test_a_paused_experiment_serves_the_control_and_logs_no_exposure(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    client = await make_client(experiment(active=False, forced={"qa-1": "treatment"}))
    listed = await client.get("/v1/experiments", headers=auth(tokens[Role.VIEWER]))
    assert listed.status_code == 200, listed.text
    [described] = listed.json()["experiments"]
    assert (described["key"], described["active"]) == ("exp", False)

    row = [0.5, -0.5, 1.0, 0.0]
    for number in range(5):
        body = (
            await client.post(
                "/v1/predict",
                json={"unit_id": f"u{number}", "features": row},
                headers=auth(tokens[Role.SERVICE]),
            )
        ).json()
        assert (body["variant"], body["in_experiment"], body["reason"]) == (
            None,
            False,
            "inactive",
        )
        assert_allclose(body["prediction"], gwmodels.control().predict_proba([row])[0, 1])
    assert events.rows["exposure"] == []
    assert {p["variant"] for p in events.rows["prediction"]} == {"_default"}

    forced = (
        await client.post(
            "/v1/predict",
            json={"unit_id": "qa-1", "features": row},
            headers=auth(tokens[Role.SERVICE]),
        )
    ).json()
    assert (forced["variant"], forced["reason"]) == ("treatment", "forced")
    assert [e["unit_id"] for e in events.rows["exposure"]] == ["qa-1"]
