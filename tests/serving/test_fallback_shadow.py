"""Timeouts, the circuit breaker and fallback to control; shadow traffic."""

from __future__ import annotations

import asyncio

import gwmodels
import numpy as np
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from numpy.testing import assert_allclose

from abflow.errors import BackendError, BackendTimeoutError, CircuitOpenError
from abflow.security.roles import Role
from abflow.serving.backends import CircuitBreaker, GuardedBackend

pytestmark = pytest.mark.anyio

ROW = [0.3, -0.2, 1.1, 0.4]


def test_circuit_breaker_opens_rests_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow()  # one trial
    assert not breaker.allow()  # and only one
    breaker.record_failure()
    assert breaker.state == "open"  # the trial failed: rest again
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()


async def test_guarded_backend_times_out_then_fails_fast() -> None:
    class Hanging:
        reference = version = "hanging"
        n_features = None
        calls = 0

        async def predict(self, rows: np.ndarray) -> list[float]:
            self.calls += 1
            await asyncio.sleep(10)
            return []

        async def aclose(self) -> None:
            pass

    inner = Hanging()
    guarded = GuardedBackend(
        inner, timeout_seconds=0.05, breaker=CircuitBreaker(failure_threshold=2, reset_seconds=60)
    )
    rows = np.zeros((1, 2))
    for _ in range(2):
        with pytest.raises(BackendTimeoutError, match=r"within 0\.05 s"):
            await guarded.predict(rows)
    with pytest.raises(CircuitOpenError):
        await guarded.predict(rows)
    assert inner.calls == 2


async def test_timeout_falls_back_to_control_and_is_logged(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "slow", "model": "python:gwmodels:slow"},
        ],
        weights=[0.0, 1.0],
    )
    client = await make_client(spec, backend_timeout_ms=50, cache_enabled=False)
    response = await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": ROW}, headers=auth(tokens[Role.SERVICE])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["variant"] == "slow"
    assert body["is_fallback"] is True
    assert body["model_version"] == "gwmodels:control"
    assert_allclose(body["prediction"], gwmodels.control().predict_proba([ROW])[0, 1])
    [prediction] = events.rows["prediction"]
    assert prediction["is_fallback"] is True
    assert prediction["variant"] == "slow"
    assert prediction["model_version"] == "gwmodels:control"
    [exposure] = events.rows["exposure"]
    assert exposure["variant"] == "slow"


async def test_broken_model_opens_its_circuit_and_control_answers(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    gwmodels.broken.calls = 0
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "broken", "model": "python:gwmodels:broken"},
        ],
        weights=[0.0, 1.0],
    )
    client = await make_client(spec, breaker_failure_threshold=3, cache_enabled=False)
    for i in range(8):
        response = await client.post(
            "/v1/predict",
            json={"unit_id": f"u{i}", "features": ROW},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert response.status_code == 200
        assert response.json()["is_fallback"] is True
    assert gwmodels.broken.calls == 3, "after 3 failures the circuit is open: no more calls"
    assert all(p["is_fallback"] for p in events.rows["prediction"])
    described = await client.get("/v1/experiments/exp", headers=auth(tokens[Role.VIEWER]))
    circuits = {v["name"]: v["circuit"] for v in described.json()["variants"]}
    assert circuits == {"control": "closed", "broken": "open"}


async def test_control_failure_is_a_5xx_not_a_fallback(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:broken"},
            {"name": "other", "model": "python:gwmodels:control"},
        ],
        weights=[1.0, 0.0],
    )
    client = await make_client(spec, cache_enabled=False)
    response = await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": ROW}, headers=auth(tokens[Role.SERVICE])
    )
    assert response.status_code == 502
    assert "model exploded" in response.json()["detail"]
    assert issubclass(CircuitOpenError, BackendError)


async def test_shadow_gets_a_copy_never_answers_and_never_delays(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    gated = gwmodels.gated
    gated.release.clear()
    gated.started.clear()
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "candidate", "model": "python:gwmodels:gated"},
        ],
        weights=[1.0, 0.0],
    )
    client = await make_client(spec, shadow={"exp": ["candidate"]}, cache_enabled=False)
    response = await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": ROW}, headers=auth(tokens[Role.SERVICE])
    )
    # The shadow model is blocked until released, yet the answer is already here.
    assert response.status_code == 200
    body = response.json()
    assert body["variant"] == "control"
    assert_allclose(body["prediction"], gwmodels.control().predict_proba([ROW])[0, 1])
    assert [p["is_shadow"] for p in events.rows["prediction"]] == [False]
    assert await asyncio.to_thread(gated.started.wait, 5)
    gated.release.set()
    for _ in range(200):
        if len(events.rows["prediction"]) == 2:
            break
        await asyncio.sleep(0.01)
    served, shadow = events.rows["prediction"]
    assert shadow["is_shadow"] is True
    assert shadow["variant"] == "candidate"
    assert shadow["model_version"] == "gated-1"
    assert shadow["request_id"] == served["request_id"] == body["request_id"]
    assert shadow["score"] == 0.5
    assert shadow["latency_ms"] > 0
    assert len(events.rows["exposure"]) == 1


async def test_units_assigned_to_a_shadow_variant_are_served_by_control(
    make_client: AppFactory, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "candidate", "model": "python:gwmodels:counting"},
        ],
        weights=[0.0, 1.0],
    )
    client = await make_client(spec, shadow={"exp": ["candidate"]})
    body = (
        await client.post(
            "/v1/predict",
            json={"unit_id": "u1", "features": ROW},
            headers=auth(tokens[Role.SERVICE]),
        )
    ).json()
    assert body["variant"] is None
    assert body["reason"] == "shadow"
    assert body["model_version"] == "gwmodels:control"
    assert events.rows["exposure"] == []
