"""Graceful shutdown: in-flight requests finish and their events are kept, then the log closes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gwmodels
import httpx
import uvicorn
from gateway_support import MemoryEvents, experiment
from model_server import free_port

from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewayConfig, GatewaySettings


def test_in_flight_requests_finish_before_the_event_log_closes(tmp_path: Path) -> None:
    gated = gwmodels.gated
    gated.release.clear()
    gated.started.clear()
    events = MemoryEvents()
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:gated"},
            {"name": "other", "model": "python:gwmodels:control"},
        ],
        weights=[1.0, 0.0],
    )
    app = create_app(
        GatewaySettings(journal_dir=tmp_path, auth_enabled=False, backend_timeout_ms=20_000),
        config=GatewayConfig(experiments=[spec]),
        events=events,
        tokens=InMemoryTokenStore(),
        catalog=InMemoryCatalog(),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            timeout_graceful_shutdown=15,
        )
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    answers: list[httpx.Response] = []
    try:
        deadline = time.monotonic() + 120  # generous: a loaded machine starts slowly
        while not server.started:
            assert time.monotonic() < deadline
            assert serving.is_alive()
            time.sleep(0.01)

        def ask() -> None:
            answers.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/predict",
                    json={"unit_id": "u1", "features": [0.0] * 4},
                    timeout=30,
                )
            )

        client = threading.Thread(target=ask)
        client.start()
        assert gated.started.wait(10), "the request reached the model"
        server.should_exit = True  # what SIGTERM does
        time.sleep(0.3)
        assert client.is_alive(), "the in-flight request is still being answered"
        assert not events.closed, "the event log stays open while requests are in flight"
        gated.release.set()
        client.join(timeout=20)
        serving.join(timeout=20)
    finally:
        gated.release.set()
        server.should_exit = True
        serving.join(timeout=20)
    [answer] = answers
    assert answer.status_code == 200
    assert answer.json()["prediction"] == 0.5
    assert [p["request_id"] for p in events.rows["prediction"]] == [answer.json()["request_id"]]
    assert events.closed, "the event log was flushed and closed after the drain"
