"""The circuit breaker reports its state changes, which the abflow_circuit_open gauge shows."""

from __future__ import annotations

import pytest
from gateway_support import AppFactory, remote_experiment

from abflow.monitoring.metrics import GatewayMetrics
from abflow.security.roles import Role
from abflow.serving.backends.resilience import CircuitBreaker


def test_breaker_reports_opening_and_closing_once_each() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_seconds=10, clock=lambda: now[0])
    seen: list[int] = []
    breaker.on_change = seen.append
    breaker.record_failure()
    assert seen == []
    breaker.record_failure()
    breaker.record_failure()  # still open: no second report
    assert seen == [1]
    now[0] = 11.0
    assert breaker.state == "half_open"
    breaker.record_success()
    breaker.record_success()
    assert seen == [1, 0]


def test_gauge_follows_the_breaker() -> None:
    metrics = GatewayMetrics()
    breaker = CircuitBreaker(failure_threshold=1)
    gauge = metrics.circuit_open.labels("models:/m/1")
    gauge.set(0)
    breaker.on_change = gauge.set
    value = lambda: metrics.registry.get_sample_value(  # noqa: E731
        "abflow_circuit_open", {"model": "models:/m/1"}
    )
    assert value() == 0
    breaker.record_failure()
    assert value() == 1
    breaker.record_success()
    assert value() == 0


@pytest.mark.anyio
async def test_metrics_never_show_credentials_of_a_model_url(
    make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    url = "http://ops:hunter2@127.0.0.1:9/invocations?api_key=XYZZY"  # port 9: nothing there
    client = await make_client(remote_experiment(url), metrics_public=True)
    metrics = (await client.get("/metrics")).text
    assert 'model="http://127.0.0.1:9/invocations"' in metrics  # labelled, redacted
    assert "hunter2" not in metrics
    assert "XYZZY" not in metrics
