"""Calls to HTTP model servers carry the prediction span's trace context (W3C traceparent).

The model server is a real one (scikit-learn behind uvicorn, model_server.py) wrapped so that
it records the headers and rows of every call it answers. Spans come from the
OpenTelemetry SDK with an in-memory exporter: each call's ``traceparent`` must name the
caller's trace and, as parent, the ``abflow.predict`` span of the request whose rows it
carries (the first request's, for a batched call).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gwmodels
import httpx
import numpy as np
import orjson
import pytest
from gateway_support import MemoryEvents, auth, remote_experiment, serve
from model_server import model_app, running
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abflow.errors import InvalidArgumentError
from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.backends import BackendOptions
from abflow.serving.backends.h1client import H1Pool
from abflow.serving.backends.http import HeaderAuth, HttpBackend
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.settings import GatewayConfig, GatewaySettings

pytestmark = pytest.mark.anyio

WIDTH = gwmodels.N_FEATURES
SLOW_MODEL_S = 0.02  # a call takes this long, so that concurrent requests queue and batch


@dataclass
class Call:
    headers: dict[str, str]
    rows: list[list[float]]


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []

            async def replay() -> Message:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
                    rows = orjson.loads(b"".join(chunks))["inputs"]
                    self.calls.append(Call(headers, rows))
                return message

            await app(scope, replay, send)

        return recording


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    app = model_app(gwmodels.challenger(), delay_seconds=SLOW_MODEL_S)
    with running(recorder.wrap(app)) as url:  # type: ignore[arg-type]
        yield f"{url}/invocations", recorder


def _app(
    tmp_path: Path, url: str, token_store: InMemoryTokenStore, *, tracing: bool
) -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(
        GatewaySettings(journal_dir=tmp_path, tracing_enabled=tracing, cache_enabled=False),
        config=GatewayConfig(
            experiments=[remote_experiment(url)],
            backends={url: BackendOptions(timeout_ms=60_000)},
        ),
        events=MemoryEvents(),
        tokens=token_store,
        catalog=InMemoryCatalog(),
        tracer_provider=provider,
    )
    return app, exporter


def _traceparent(value: str) -> tuple[str, str]:
    version, trace_id, parent_id, flags = value.split("-")
    assert (version, flags) == ("00", "01")
    return trace_id, parent_id


async def _predict(
    client: httpx.AsyncClient, token: str, row: np.ndarray, trace_id: str
) -> dict[str, Any]:
    response = await client.post(
        "/v1/predict",
        json={"unit_id": f"u-{trace_id[:8]}", "features": row.tolist()},
        headers={**auth(token), "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["is_fallback"] is False
    return body


async def _predict_rows(
    app: Any, token: str, rows: np.ndarray, trace_ids: list[str], *, concurrent: bool
) -> None:
    async with serve(app) as client:
        pairs = list(zip(rows, trace_ids, strict=True))
        if concurrent:
            await asyncio.gather(*(_predict(client, token, r, t) for r, t in pairs))
        else:
            for r, t in pairs:
                await _predict(client, token, r, t)


@pytest.mark.parametrize("concurrent", [False, True], ids=["one-at-a-time", "batched"])
async def test_each_backend_call_is_a_child_of_its_prediction_span(
    tmp_path: Path,
    server: tuple[str, Recorder],
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    rng: np.random.Generator,
    concurrent: bool,
) -> None:
    url, recorder = server
    app, exporter = _app(tmp_path, url, token_store, tracing=True)
    rows = rng.normal(size=(16, WIDTH))
    trace_ids = [secrets.token_hex(16) for _ in rows]
    trace_of_row = {tuple(row.tolist()): t for row, t in zip(rows, trace_ids, strict=True)}
    recorder.calls.clear()
    await _predict_rows(app, tokens[Role.SERVICE], rows, trace_ids, concurrent=concurrent)

    spans = {
        f"{s.context.trace_id:032x}": s
        for s in exporter.get_finished_spans()
        if s.name == "abflow.predict"
    }
    assert sorted(spans) == sorted(trace_ids)
    calls = [c for c in recorder.calls if tuple(c.rows[0]) in trace_of_row]
    assert sum(len(c.rows) for c in calls) == len(rows)
    for call in calls:
        trace_id, parent_id = _traceparent(call.headers["traceparent"])
        first = trace_of_row[tuple(call.rows[0])]  # the call's first request
        assert trace_id == first
        assert parent_id == f"{spans[first].context.span_id:016x}"
    if concurrent:
        assert max(len(c.rows) for c in calls) > 1  # the batched path was taken
    else:
        assert [len(c.rows) for c in calls] == [1] * len(rows)


async def test_with_tracing_off_no_trace_context_reaches_the_backend(
    tmp_path: Path,
    server: tuple[str, Recorder],
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    rng: np.random.Generator,
) -> None:
    url, recorder = server
    app, exporter = _app(tmp_path, url, token_store, tracing=False)
    rows = rng.normal(size=(4, WIDTH))
    recorder.calls.clear()
    trace_ids = [secrets.token_hex(16) for _ in rows]
    await _predict_rows(app, tokens[Role.SERVICE], rows, trace_ids, concurrent=False)
    sent = [c for c in recorder.calls if c.rows[0] in rows.tolist()]
    assert len(sent) == len(rows)
    assert all("traceparent" not in c.headers for c in sent)
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("client", ["lean", "httpx"])
async def test_both_http_clients_send_the_per_call_headers(
    server: tuple[str, Recorder], client: str
) -> None:
    url, recorder = server
    header = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    backend = HttpBackend(
        url,
        auth=HeaderAuth(lambda request: {}) if client == "httpx" else None,
        timeout_seconds=60.0,
        trace_headers=lambda: {"traceparent": header},
    )
    recorder.calls.clear()
    try:
        assert backend.client_name == client
        await backend.predict(np.full((1, WIDTH), 0.25))
    finally:
        await backend.aclose()
    [call] = [c for c in recorder.calls if c.rows == [[0.25] * WIDTH]]
    assert call.headers["traceparent"] == header


@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb"])
async def test_a_per_call_header_with_a_line_break_is_refused(
    server: tuple[str, Recorder], value: str
) -> None:
    url, recorder = server
    pool = H1Pool(url)
    recorder.calls.clear()
    try:
        with pytest.raises(InvalidArgumentError, match="line breaks"):
            await pool.request("POST", "/invocations", b"{}", {"tracestate": value})
    finally:
        await pool.aclose()
    assert recorder.calls == []
