"""Micro-batching in front of MLflow's real scoring server (``mlflow models serve``):
concurrent requests through the gateway get the answers the server gives each row alone,
and every request keeps its own events, fallback and reason."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, metric_samples, remote_experiment
from mlflow_server import COLUMNS, ServedModel

from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions

# slow: the scoring server takes 15-30 s to start on a busy machine (once per session: the
# `served` fixture of conftest.py).
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

N_CONCURRENT = 48
LOADED_MACHINE_MS = 60_000.0


async def _concurrently(
    client: httpx.AsyncClient, token: str, rows: np.ndarray
) -> list[dict[str, Any]]:
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/predict",
                json={"unit_id": f"u{i}", "features": row.tolist()},
                headers=auth(token),
            )
            for i, row in enumerate(rows)
        )
    )
    assert [r.status_code for r in responses] == [200] * len(rows)
    return [r.json() for r in responses]


async def test_concurrent_requests_answer_as_the_server_answers_each_row_alone(
    served: ServedModel,
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
) -> None:
    rows = rng.normal(size=(N_CONCURRENT, len(COLUMNS)))
    # The reference: the scoring server asked for one row at a time, without abflow.
    with httpx.Client() as direct:
        alone = [
            direct.post(
                served.url,
                json={"dataframe_split": {"columns": list(COLUMNS), "data": [row]}},
            ).json()["predictions"][0][1]
            for row in rows.tolist()
        ]
    options = BackendOptions(
        columns=list(COLUMNS), output="proba", class_index=1, timeout_ms=LOADED_MACHINE_MS
    )
    client = await make_client(remote_experiment(served.url), backends={served.url: options})
    bodies = await _concurrently(client, tokens[Role.SERVICE], rows)

    assert [b["is_fallback"] for b in bodies] == [False] * N_CONCURRENT
    # The server computes a batch with one matrix product: a row's probability may differ
    # from its one-row answer in the last bits (BLAS), never more.
    np.testing.assert_allclose([b["prediction"] for b in bodies], alone, rtol=1e-13, atol=1e-15)
    predictions = {p["request_id"]: p for p in events.rows["prediction"]}
    assert len(events.rows["prediction"]) == N_CONCURRENT  # no event lost or doubled
    assert len(events.rows["exposure"]) == N_CONCURRENT
    for body in bodies:
        event = predictions[body["request_id"]]
        assert event["score"] == body["prediction"]
        assert event["error"] is None
    metrics = (await client.get("/metrics", headers=auth(tokens[Role.VIEWER]))).text
    calls = [
        s.value
        for s in metric_samples(metrics, "abflow_batch_rows_count")
        if s.labels["model"] == served.url
    ]
    assert calls
    assert calls[0] < N_CONCURRENT / 2  # the server received a few requests of many rows


async def test_a_refused_batch_falls_back_per_request_each_with_its_reason(
    served: ServedModel,
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
) -> None:
    # No columns: {"inputs": rows}, which the signature refuses (HTTP 400) in any batch.
    # A circuit kept closed and a generous timeout: one reason, even on a loaded machine.
    options = BackendOptions(failure_threshold=1000, timeout_ms=LOADED_MACHINE_MS)
    client = await make_client(remote_experiment(served.url), backends={served.url: options})
    bodies = await _concurrently(
        client, tokens[Role.SERVICE], rng.normal(size=(N_CONCURRENT, len(COLUMNS)))
    )

    assert [b["is_fallback"] for b in bodies] == [True] * N_CONCURRENT
    errors = {p["request_id"]: p["error"] for p in events.rows["prediction"]}
    assert len(events.rows["prediction"]) == N_CONCURRENT
    for body in bodies:
        error = errors[body["request_id"]]
        assert error.startswith(f"status_4xx: model server {served.url} answered 400: ")
        assert "Model is missing inputs ['f0', 'f1', 'f2', 'f3']" in error
    metrics = (await client.get("/metrics", headers=auth(tokens[Role.VIEWER]))).text
    fallbacks = {
        s.labels["reason"]: s.value for s in metric_samples(metrics, "abflow_fallbacks_total")
    }
    assert fallbacks == {"status_4xx": float(N_CONCURRENT)}
