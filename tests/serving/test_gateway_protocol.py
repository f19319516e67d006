"""The protocol's own answer to ``POST /v1/predict`` is the ASGI path's, byte for byte.

Two real uvicorn servers on one experiment: one with :class:`BoundedHeadProtocol` (every
request through ASGI, the app's fast path), one with :class:`GatewayProtocol` (predictions
answered by the protocol). The same raw requests go to both over sockets, the answers are
compared without their ``date`` header, and the events each logged are compared too. A
counter on the protocol's handler proves it answered, so the comparison cannot pass by the
protocol quietly falling back to ASGI.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from gateway_support import MemoryEvents, experiment
from model_server import running

from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore, create_token
from abflow.serving import gateway_protocol
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.gateway_protocol import GatewayProtocol
from abflow.serving.http_protocol import BoundedHeadProtocol
from abflow.serving.settings import GatewayConfig, GatewaySettings

MAX_BODY = 2048


@dataclass
class Served:
    port: int
    token: str
    events: MemoryEvents


@pytest.fixture(scope="module")
def fast_answers() -> Iterator[list[int]]:
    """How many predictions the protocol answered itself (not through ASGI)."""
    counted: list[int] = []
    original = gateway_protocol._answer

    async def counting(cycle: Any, services: Any) -> None:
        counted.append(1)
        await original(cycle, services)

    gateway_protocol._answer = counting  # type: ignore[assignment]
    yield counted
    gateway_protocol._answer = original  # type: ignore[assignment]


def _serve(protocol: type, tmp: Any) -> Iterator[Served]:
    tokens = InMemoryTokenStore()
    plain, _ = create_token(tokens, "svc", Role.SERVICE)
    events = MemoryEvents()
    app = create_app(
        GatewaySettings(journal_dir=tmp / "journal", store_url=None, max_body_bytes=MAX_BODY),
        config=GatewayConfig(experiments=[experiment()]),
        events=events,
        tokens=tokens,
        catalog=InMemoryCatalog(),
    )
    with running(app, http=protocol, lifespan="on", log_level="error") as url:
        yield Served(int(url.rsplit(":", 1)[1]), plain, events)


@pytest.fixture(scope="module")
def through_asgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(BoundedHeadProtocol, tmp_path_factory.mktemp("asgi"))


@pytest.fixture(scope="module")
def through_protocol(
    tmp_path_factory: pytest.TempPathFactory, fast_answers: list[int]
) -> Iterator[Served]:
    yield from _serve(GatewayProtocol, tmp_path_factory.mktemp("protocol"))


def predict(
    token: str | None, body: bytes, extra: bytes = b"", *, version: bytes = b"1.1"
) -> bytes:
    auth = b"authorization: Bearer " + token.encode() + b"\r\n" if token else b""
    return (
        b"POST /v1/predict HTTP/" + version + b"\r\nhost: x\r\ncontent-type: application/json\r\n"
        + auth + extra + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def row(unit: str, request_id: str) -> tuple[bytes, bytes]:
    body = orjson.dumps({"unit_id": unit, "features": [0.1, -0.2, 0.3, 0.4]})
    return body, b"x-request-id: " + request_id.encode() + b"\r\n"


def exchange(port: int, parts: list[bytes], *, pause: float = 0.0) -> bytes:
    """Send ``parts`` (``pause`` seconds apart), then read until the server closes or
    stays silent for 0.5 s; the answers with every ``date`` header removed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for part in parts:
            connection.sendall(part)
            time.sleep(pause)
        connection.settimeout(0.5)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                received += b"<closed>"
                break
            received += chunk
    lines = received.split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.lower().startswith(b"date: "))


def both(asgi: Served, protocol: Served, make: Any, *, pause: float = 0.0) -> tuple[bytes, bytes]:
    return (
        exchange(asgi.port, make(asgi.token), pause=pause),
        exchange(protocol.port, make(protocol.token), pause=pause),
    )


def logged(events: MemoryEvents, unit: str) -> list[dict[str, Any]]:
    """The events of one unit, without what differs by nature (ids, times, latency)."""
    volatile = {"event_id", "ts", "latency_ms"}
    return [
        {k: v for k, v in r.items() if k not in volatile}
        for kind in ("exposure", "prediction")
        for r in events.rows[kind]
        if r["unit_id"] == unit
    ]


CASES = {
    "answered": lambda t: [predict(t, *row("u-1", "rid-answered"))],
    "no token": lambda t: [predict(None, *row("u-2", "rid-401"))],
    "not json": lambda t: [predict(t, b"{not json")],
    "declared too large": lambda t: [predict(t, b"x" * (MAX_BODY + 1))],
    "chunked too large": lambda t: [
        b"POST /v1/predict HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
        + t.encode()
        + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(b"400\r\n" + b"a" * 1024 + b"\r\n" for _ in range(3))
        + b"0\r\n\r\n"
    ],
    "bad request id": lambda t: [predict(t, row("u-3", "x")[0], extra=b"x-request-id: a b\r\n")],
    "expect 100-continue": lambda t: [
        predict(t, *_with(row("u-4", "rid-continue"), b"expect: 100-continue\r\n"))
    ],
    "pipelined": lambda t: [
        predict(t, *row("u-5", "rid-p1")) + predict(t, *row("u-6", "rid-p2")) + predict(t, b"{}")
    ],
    "http/1.0": lambda t: [predict(t, *row("u-7", "rid-10"), version=b"1.0")],
    "connection close": lambda t: [
        predict(t, *_with(row("u-8", "rid-close"), b"connection: close\r\n"))
    ],
    "with a query": lambda t: [
        predict(t, *row("u-9", "rid-query")).replace(b"/v1/predict", b"/v1/predict?a=1", 1)
    ],
}


def _with(parts: tuple[bytes, bytes], header: bytes) -> tuple[bytes, bytes]:
    return parts[0], parts[1] + header


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_bytes_as_through_asgi(
    case: str, through_asgi: Served, through_protocol: Served, fast_answers: list[int]
) -> None:
    before = len(fast_answers)
    asgi, protocol = both(through_asgi, through_protocol, CASES[case])
    assert protocol == asgi
    assert protocol.startswith(b"HTTP/1.1 ")
    assert len(fast_answers) > before, "the protocol did not answer itself"


def test_a_body_in_two_writes_and_the_events_logged(
    through_asgi: Served, through_protocol: Served
) -> None:
    body, extra = row("u-10", "rid-split")
    asgi, protocol = both(
        through_asgi,
        through_protocol,
        lambda t: [predict(t, body, extra=extra)[:-10], predict(t, body, extra=extra)[-10:]],
        pause=0.2,
    )
    assert protocol == asgi
    assert b" 200 OK" in protocol
    assert logged(through_protocol.events, "u-10") == logged(through_asgi.events, "u-10")
    assert len(logged(through_protocol.events, "u-10")) == 2  # exposure and prediction


def test_a_client_gone_mid_body_logs_nothing_and_the_next_is_answered(
    through_protocol: Served,
) -> None:
    served = through_protocol
    body, extra = row("u-11", "rid-gone")
    sent = predict(served.token, body, extra=extra)
    before = sum(len(rows) for rows in served.events.rows.values())
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as connection:
        connection.sendall(sent[:-5])
    time.sleep(0.3)
    assert sum(len(rows) for rows in served.events.rows.values()) == before
    answer = exchange(served.port, [predict(served.token, *row("u-12", "rid-after"))])
    assert b" 200 OK" in answer
