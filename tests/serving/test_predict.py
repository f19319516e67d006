"""POST /v1/predict end to end through the app: routing, models, events, response."""

from __future__ import annotations

import gwmodels
import numpy as np
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from numpy.testing import assert_allclose

from abflow.routing import assign
from abflow.security.roles import Role
from abflow.store.schema import exposures, predictions

pytestmark = pytest.mark.anyio


def _row(rng: np.random.Generator) -> list[float]:
    return rng.normal(size=gwmodels.N_FEATURES).round(6).tolist()


async def test_prediction_uses_the_assigned_variants_model(
    make_client: AppFactory, tokens: dict[Role, str], rng: np.random.Generator
) -> None:
    spec = experiment()
    client = await make_client(spec)
    models = {"control": gwmodels.control(), "treatment": gwmodels.challenger()}
    seen = set()
    for i in range(40):
        row = _row(rng)
        response = await client.post(
            "/v1/predict",
            json={"experiment": "exp", "unit_id": f"u{i}", "features": row},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        expected = assign(spec, {"user_id": f"u{i}"})
        assert body["variant"] == expected.variant
        assert body["in_experiment"] is True
        model = models[expected.variant]
        assert_allclose(body["prediction"], model.predict_proba(np.array([row]))[0, 1])
        assert response.headers["x-request-id"] == body["request_id"]
        seen.add(body["variant"])
    assert seen == {"control", "treatment"}


async def test_batch_of_rows_gets_one_prediction_per_row(
    make_client: AppFactory, tokens: dict[Role, str], rng: np.random.Generator
) -> None:
    client = await make_client(experiment(weights=[1.0, 0.0]))
    rows = rng.normal(size=(7, gwmodels.N_FEATURES)).tolist()
    response = await client.post(
        "/v1/predict",
        json={"experiment": "exp", "unit_id": "u1", "features": rows},
        headers=auth(tokens[Role.SERVICE]),
    )
    assert response.status_code == 200, response.text
    expected = gwmodels.control().predict_proba(np.array(rows))[:, 1]
    assert_allclose(response.json()["prediction"], expected)


async def test_events_carry_the_schema_columns_and_are_logged_before_the_answer(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    client = await make_client(experiment())
    response = await client.post(
        "/v1/predict",
        json={"unit_id": "u7", "attributes": {"country": "NL"}, "features": [0.1, 0.2, 0.3, 0.4]},
        headers=auth(tokens[Role.SERVICE]),
    )
    body = response.json()
    [exposure] = events.rows["exposure"]
    [prediction] = events.rows["prediction"]
    assert set(exposure) == {c.name for c in exposures.columns}
    assert set(prediction) == {c.name for c in predictions.columns}
    assert exposure["unit_id"] == prediction["unit_id"] == "u7"
    assert exposure["variant"] == prediction["variant"] == body["variant"]
    assert exposure["phase"] == prediction["phase"] == 1
    assert '"country":"NL"' in exposure["attributes_json"]
    assert prediction["request_id"] == body["request_id"]
    assert prediction["model_version"] == body["model_version"]
    assert prediction["score"] == pytest.approx(body["prediction"])
    assert prediction["is_fallback"] is False
    assert prediction["is_shadow"] is False
    assert prediction["latency_ms"] > 0
    assert exposure["event_id"] != prediction["event_id"]


async def test_units_outside_the_experiment_get_the_control_model(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    spec = experiment(coverage=0.3)
    client = await make_client(spec)
    outside = [f"u{i}" for i in range(200) if not assign(spec, {"user_id": f"u{i}"}).in_experiment]
    assert outside, "coverage 0.3 must leave some of 200 units out"
    row = [0.5, -0.5, 1.0, 0.0]
    for unit in outside[:5]:
        body = (
            await client.post(
                "/v1/predict",
                json={"unit_id": unit, "features": row},
                headers=auth(tokens[Role.SERVICE]),
            )
        ).json()
        assert body["variant"] is None
        assert body["in_experiment"] is False
        assert body["reason"] == "coverage"
        assert_allclose(body["prediction"], gwmodels.control().predict_proba([row])[0, 1])
    assert events.rows["exposure"] == []
    assert {p["variant"] for p in events.rows["prediction"]} == {"_default"}


async def test_forced_overrides_are_honoured(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    spec = experiment(forced={"qa-1": "treatment", "qa-2": "control"})
    client = await make_client(spec)
    for unit, variant in spec.forced.items():
        body = (
            await client.post(
                "/v1/predict",
                json={"unit_id": unit, "features": [0, 0, 0, 0]},
                headers=auth(tokens[Role.SERVICE]),
            )
        ).json()
        assert body["variant"] == variant
        assert body["reason"] == "forced"


async def test_unit_id_may_come_from_the_attributes(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    spec = experiment()
    client = await make_client(spec)
    body = (
        await client.post(
            "/v1/predict",
            json={"attributes": {"user_id": "u3"}, "features": [0, 0, 0, 0]},
            headers=auth(tokens[Role.SERVICE]),
        )
    ).json()
    assert body["variant"] == assign(spec, {"user_id": "u3"}).variant


async def test_a_numeric_unit_attribute_is_logged_as_the_text_it_is_routed_by(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    """7.0 is unit "7" (as GrowthBook's SDKs hash it) in the answer's routing and in every
    event, so one stored unit never holds two variants."""
    spec = experiment()
    client = await make_client(spec)
    for unit, text in ((7.0, "7"), (7, "7"), (2.5, "2.5"), (1.5e-7, "1.5e-7")):
        body = (
            await client.post(
                "/v1/predict",
                json={"attributes": {"user_id": unit}, "features": [0, 0, 0, 0]},
                headers=auth(tokens[Role.SERVICE]),
            )
        ).json()
        assert body["variant"] == assign(spec, {"user_id": text}).variant
        assert events.rows["prediction"][-1]["unit_id"] == text
        assert events.rows["exposure"][-1]["unit_id"] == text


async def test_unit_id_is_a_string(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    """Other types are refused: a number has no one text form (1000, 1e3) every SDK hashes."""
    client = await make_client()
    for unit in (12345, 1.5, True, ["u1"], {"id": "u1"}):
        response = await client.post(
            "/v1/predict",
            json={"unit_id": unit, "features": [0, 0, 0, 0]},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert response.status_code == 422, unit
        assert response.json()["detail"] == "unit_id: Input should be a valid string"
    assert events.rows["prediction"] == []
