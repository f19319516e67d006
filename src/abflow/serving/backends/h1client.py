"""A lean HTTP/1.1 client for the prediction hot path: keep-alive connections to one server.

Measured against a real ``mlflow models serve`` (``bench/remote.py``), httpx spends about
1.5 CPU-ms per request in the gateway, aiohttp about 0.5, and this client, which writes a
precomputed request head and parses the answer with httptools (llhttp, the C parser uvicorn
uses), about 0.15: more than the model server's own cost per row, the first time round.
It does only what a model server call needs: one origin, ``POST``/``GET`` with a body
known in advance, static headers (and a few per request, such as a trace context),
answers with ``content-length``, chunked or read-to-close bodies, TLS, and a pool of at
most ``max_connections`` keep-alive connections. A request that fails on a reused
connection before any byte of the answer came back (the server closed it while idle) is
sent once more on a fresh one: model calls are idempotent. Proxies, redirects, cookies and
multi-step auth are left to httpx, which
:class:`~abflow.serving.backends.http.HttpBackend` uses for such backends.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from abflow.errors import ConfigError, InvalidArgumentError

__all__ = ["H1Pool", "H1Response"]


class H1Response:
    """Status and body of one answer."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.is_closed = False
        self._waiter: asyncio.Future[H1Response] | None = None
        self._chunks: list[bytes] = []
        self._received = False
        self._to_close = False
        self._headers_done = False
        self._framed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"invalid HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        if self._headers_done and not self._framed:  # the body ran until the close
            self._complete()
            return
        self._fail(ConnectionResetError("the server closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            self._framed = True
        elif lowered == b"connection" and value.lower() == b"close":
            self._to_close = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self.parser.get_status_code() in (204, 304):
            self._framed = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._complete()

    # the client's side
    def send(self, data: bytes) -> asyncio.Future[H1Response]:
        assert self.transport is not None
        self._chunks = []
        self._received = self._headers_done = self._framed = False
        if self.transport.is_closing():  # closed under us since it went idle
            msg = "the connection is closing"
            raise ConnectionResetError(msg)
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self.transport.write(data)
        return self._waiter

    @property
    def received_nothing(self) -> bool:
        """No byte of the answer arrived: the request may be sent again elsewhere."""
        return not self._received

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        status = self.parser.get_status_code()
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        if self._to_close or not self.parser.should_keep_alive():
            self.close()
        waiter.set_result(H1Response(status, body))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def close(self) -> None:
        self.is_closed = True
        if self.transport is not None:
            self.transport.close()


def _header_lines(headers: Mapping[str, str]) -> bytes:
    """``name: value`` lines; a line break in a name or value would start a header of its
    own (or the body), so such a header is refused."""
    text = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        msg = f"header names and values must not contain line breaks: {sorted(headers)}"
        raise InvalidArgumentError(msg)
    return text.encode("latin-1")


class H1Pool:
    """Keep-alive connections to the origin of ``url``; ``request`` is safe to call
    concurrently (each call holds one connection, up to ``max_connections``)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 64,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"not an http(s) URL: {parts.scheme}://{parts.hostname}"
            raise ConfigError(msg)
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        netloc = parts.netloc.rpartition("@")[2]
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head_suffix = f" HTTP/1.1\r\nhost: {netloc}\r\n{extra}".encode("latin-1")
        self._max_connections = max_connections
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> H1Response:
        """Send one request (``target``: path and query) and read its whole answer.
        ``headers`` are added to this request only (the pool's own are on every request)."""
        head = method.encode() + b" " + target.encode("latin-1") + self._head_suffix
        if headers:
            head += _header_lines(headers)
        if body is None:
            data = head + b"\r\n"
        else:
            length = str(len(body)).encode()
            data = head + b"content-type: application/json\r\ncontent-length: " + length
            data += b"\r\n\r\n" + body
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        async with self._slots:
            connection = self._reusable()
            if connection is not None:
                try:
                    return await self._exchange(connection, data)
                except ConnectionError:
                    if not connection.received_nothing:
                        raise
                    # the server closed it while idle: once more on a fresh connection
            return await self._exchange(await self._connect(), data)

    def _reusable(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed:
                return connection
            self._open.discard(connection)
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        self._open.add(connection)
        return connection

    async def _exchange(self, connection: _Connection, data: bytes) -> H1Response:
        try:
            response = await connection.send(data)
        except BaseException:
            # cancelled (timeout) or failed mid-answer: the connection's state is unknown
            connection.close()
            self._open.discard(connection)
            raise
        if connection.is_closed:
            self._open.discard(connection)
        else:
            self._idle.append(connection)
        return response

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
