"""The gateway's HTTP protocol bounds a request's head, and nothing else, over a real socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from model_server import running

from abflow.serving.http_protocol import MAX_HEAD_BYTES, BoundedHeadProtocol


async def echo_length(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Answers the size of the body it read; on /early, 401 before reading any (as a 413
    from the declared length, a 401 or a 404 does)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/early":
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-length", b"0")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b""})
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running(echo_length, http=BoundedHeadProtocol, log_level="error") as url:  # type: ignore[arg-type]
        yield int(url.rsplit(":", 1)[1])


def exchange(port: int, request: bytes, answers: int = 1) -> list[bytes]:
    """Send ``request`` in one write; the status lines of the answers read before the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while received.count(b"HTTP/1.1 ") < answers or not received.endswith(b"\r\n\r\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
            if received.count(b"HTTP/1.1 ") >= answers and b"\r\n\r\n" in received:
                break
    return [line.split(b"\r\n")[0] for line in received.split(b"HTTP/1.1 ")[1:]]


def get(header_bytes: int) -> bytes:
    return b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * header_bytes + b"\r\n\r\n"


def test_a_head_still_open_past_the_bound_is_431_and_a_normal_one_is_answered(
    port: int,
) -> None:
    """A head is counted by the reads that do not end it, so one that arrives in a single
    read (up to 256 KiB) passes; the memory held stays under the bound plus one read."""
    assert exchange(port, get(100)) == [b"200 OK"]
    assert first_answer_to_a_trickle(port, get(160 * MAX_HEAD_BYTES)) == (
        b"HTTP/1.1 431 Request Header Fields Too Large"
    )


def first_answer_to_a_trickle(port: int, request: bytes) -> bytes:
    """Send ``request`` 16 KiB at a time while reading: the status line answered, before
    the server closes (it does not read the rest of a 10 MiB head)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for start in range(0, len(request), 16384):
            try:
                connection.sendall(request[start : start + 16384])
            except OSError:  # closed on us: the answer is already in our buffer
                break
            connection.settimeout(0.01)
            try:
                received = connection.recv(4096)
            except TimeoutError:
                continue
            finally:
                connection.settimeout(10)
            if received:
                return received.split(b"\r\n")[0]
    return b""


def test_a_large_body_sent_with_its_head_is_not_a_large_head(port: int) -> None:
    body = b"x" * (10 * MAX_HEAD_BYTES)
    head = f"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    assert exchange(port, head + body) == [b"200 OK"]


def test_the_bound_is_per_request_on_a_kept_alive_connection(port: int) -> None:
    near = get(MAX_HEAD_BYTES // 2)  # three of them exceed the bound together, not one
    assert exchange(port, near * 3, answers=3) == [b"200 OK"] * 3


def test_a_body_still_arriving_after_an_early_answer_is_not_a_head(port: int) -> None:
    body = b"x" * (16 * MAX_HEAD_BYTES)
    head = f"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    assert exchange(port, head + body + get(100), answers=2) == [b"401 Unauthorized", b"200 OK"]
