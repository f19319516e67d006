"""Spans exported over OTLP/HTTP, configured by the standard ``OTEL_*`` variables only.

The receiver is a real HTTP server in the test that decodes each body as the protobuf
``ExportTraceServiceRequest`` of the OTLP specification (opentelemetry-proto), as a
collector does; the gateway is told where it is by ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from gateway_support import MemoryEvents, auth, experiment, serve
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewayConfig, GatewaySettings

pytestmark = pytest.mark.anyio

pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Any]] = []  # (resource attributes, span)
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                received.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    resource = _attributes(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        received.spans.extend((resource, s) for s in scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value"))


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", found.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    yield found
    found.server.shutdown()
    found.server.server_close()
    thread.join()


def _app(
    tmp_path: Path, events: MemoryEvents, token_store: InMemoryTokenStore, **settings: Any
) -> FastAPI:
    return create_app(
        GatewaySettings(journal_dir=tmp_path, tracing_enabled=True, **settings),
        config=GatewayConfig(
            experiments=[
                experiment(
                    variants=[
                        {"name": "control", "model": "python:gwmodels:control"},
                        {"name": "broken", "model": "python:gwmodels:broken"},
                    ],
                    forced={"u-broken": "broken", "u-control": "control"},
                )
            ]
        ),
        events=events,
        tokens=token_store,
        catalog=InMemoryCatalog(),
    )


@pytest.mark.parametrize("fast_path", [True, False])
async def test_prediction_spans_join_the_callers_trace_with_their_attributes(
    tmp_path: Path,
    events: MemoryEvents,
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    receiver: Receiver,
    fast_path: bool,
) -> None:
    trace_id = secrets.token_hex(16)
    parent_ids = [secrets.token_hex(8) for _ in range(3)]
    app = _app(tmp_path, events, token_store, predict_fast_path=fast_path, cache_enabled=True)
    bodies = []
    async with serve(app) as client:
        for i, (unit, parent) in enumerate(
            zip(["u-control", "u-control", "u-broken"], parent_ids, strict=True)
        ):
            response = await client.post(
                "/v1/predict",
                json={"unit_id": unit, "features": [0.5, -1.0, 0.25, 2.0]},
                headers={
                    **auth(tokens[Role.SERVICE]),
                    "traceparent": f"00-{trace_id}-{parent}-01",
                    "x-request-id": f"req-{i}",
                },
            )
            assert response.status_code == 200, response.text
            bodies.append(response.json())
    # The lifespan's end flushed the batch: every prediction's span reached the receiver.
    assert set(receiver.paths) == {"/v1/traces"}
    spans = sorted(
        (span for _, span in receiver.spans if span.name == "abflow.predict"),
        key=lambda s: s.start_time_unix_nano,
    )
    assert len(spans) == 3
    assert {resource["service.name"] for resource, _ in receiver.spans} == {"gateway-under-test"}
    for span, parent, body in zip(spans, parent_ids, bodies, strict=True):
        assert span.trace_id.hex() == trace_id
        assert span.parent_span_id.hex() == parent
        attributes = _attributes(span.attributes)
        assert attributes["abflow.request_id"] == body["request_id"]
        assert attributes["abflow.experiment"] == body["experiment"] == "exp"
        assert attributes["abflow.variant"] == body["variant"]
        assert attributes["abflow.model_version"] == body["model_version"]
        assert attributes["abflow.is_fallback"] == body["is_fallback"]
    first, second, broken = (_attributes(s.attributes) for s in spans)
    # Same features, same model: the second answer came from the prediction cache.
    assert (first["abflow.cache_hit"], second["abflow.cache_hit"]) == (False, True)
    assert broken["abflow.variant"] == "broken"
    assert broken["abflow.is_fallback"] is True
    assert broken["abflow.fallback_reason"] == "error"
    assert bodies[2]["is_fallback"] is True


async def test_without_a_caller_trace_each_prediction_starts_its_own(
    tmp_path: Path,
    events: MemoryEvents,
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    receiver: Receiver,
) -> None:
    async with serve(_app(tmp_path, events, token_store)) as client:
        for unit in ("u1", "u2"):
            response = await client.post(
                "/v1/predict",
                json={"unit_id": unit, "features": [0.0] * 4},
                headers=auth(tokens[Role.SERVICE]),
            )
            assert response.status_code == 200
    spans = [span for _, span in receiver.spans]
    assert len(spans) == 2
    assert len({span.trace_id for span in spans}) == 2
    assert all(span.parent_span_id == b"" for span in spans)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("OTEL_TRACES_EXPORTER", "none", "OTEL_TRACES_EXPORTER=none exports nothing"),
        ("OTEL_SDK_DISABLED", "true", "OTEL_SDK_DISABLED=true"),
    ],
)
async def test_tracing_that_cannot_export_is_a_warning_and_makes_no_spans(
    tmp_path: Path,
    events: MemoryEvents,
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    reason: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.WARNING, logger="abflow.monitoring.tracing"):
        app = _app(tmp_path, events, token_store)
    [record] = [r for r in caplog.records if r.name == "abflow.monitoring.tracing"]
    assert reason in record.getMessage()
    assert "ABFLOW_TRACING_ENABLED" in record.getMessage()
    async with serve(app) as client:
        response = await client.post(
            "/v1/predict",
            json={"unit_id": "u1", "features": [0.0] * 4},
            headers={**auth(tokens[Role.SERVICE]), "traceparent": f"00-{'1' * 32}-{'2' * 16}-01"},
        )
        assert response.status_code == 200
    assert receiver.spans == []
