"""The gateway's HTTP protocol: one write per answer, and nothing held that a client waits for.

The write counting runs against a transport that records writes (a unit test of the holding
rule); the rest against a real uvicorn server on a loopback socket, read byte by byte as a
client would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from abflow.serving.http_protocol import GatewayHttpProtocol, _OneWriteTransport


class _RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def writelines(self, lines: list[bytes]) -> None:
        self.writes.append(b"".join(lines))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def _run(steps: Any) -> _RecordingTransport:
    recorded = _RecordingTransport()

    async def main() -> None:
        transport = _OneWriteTransport(recorded)  # type: ignore[arg-type]
        await steps(transport)

    asyncio.run(main())
    return recorded


def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def steps(transport: _OneWriteTransport) -> None:
        transport.write(HEAD)
        transport.write(b"ok")
        transport.write(HEAD)
        transport.write(b"no")
        await asyncio.sleep(0)

    assert _run(steps).writes == [HEAD + b"ok", HEAD + b"no"]


def test_a_head_with_no_body_goes_out_at_the_end_of_the_loop_pass() -> None:
    async def steps(transport: _OneWriteTransport) -> None:
        transport.write(HEAD)
        assert recorded_writes(transport) == []
        await asyncio.sleep(0)
        assert recorded_writes(transport) == [HEAD]
        transport.write(b"later")

    assert _run(steps).writes == [HEAD, b"later"]


def recorded_writes(transport: _OneWriteTransport) -> list[bytes]:
    inner: _RecordingTransport = transport._transport  # type: ignore[assignment]
    return inner.writes


def test_interim_answers_bodies_and_closes_are_never_held() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"

    async def steps(transport: _OneWriteTransport) -> None:
        transport.write(interim)
        assert recorded_writes(transport) == [interim]
        transport.write(b"0\r\n\r\n")  # the last chunk of a chunked body
        transport.write(HEAD)
        transport.close()

    recorded = _run(steps)
    assert recorded.writes == [interim, b"0\r\n\r\n", HEAD]
    assert recorded.closed


def test_other_transport_calls_reach_the_socket_transport() -> None:
    async def steps(transport: _OneWriteTransport) -> None:
        assert transport.get_extra_info("peername") == "info:peername"
        transport.write(HEAD)
        transport.writelines([b"a", b"b"])  # the held head first, in order

    assert _run(steps).writes == [HEAD, b"ab"]


# -- a real server ---------------------------------------------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(1.0)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})
        return
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=free,
        loop="uvloop",
        http=GatewayHttpProtocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(10)


def _read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head, body) of one content-length answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_keep_alive_answers_get_bodies_heads_and_empty_answers(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        head, body = _read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"hello"
        sock.sendall(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
        head = _read_head(sock)  # no body follows a HEAD answer
        assert head.startswith(b"HTTP/1.1 200")
        assert b"content-length: 5" in head
        sock.sendall(b"GET /empty HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_head(sock).startswith(b"HTTP/1.1 204")
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _read_answer(sock)[1] == b"hello"


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_a_streamed_answers_head_is_not_held_until_its_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        started = time.monotonic()
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 0.5  # the body comes 1 s after the head


def test_a_client_expecting_100_continue_gets_it_before_it_sends_the_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        )
        assert _read_head(sock).startswith(b"HTTP/1.1 100")
        sock.sendall(b"ping")
        head, body = _read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"ping"
