"""The gateway's HTTP/1.1 server protocol: uvicorn's httptools protocol, one write per answer.

uvicorn writes a response's status line and headers with one ``transport.write`` and its body
with another: two ``send(2)`` calls, and two TCP segments the client must read, for every
prediction. Here the head is held until the body's first write and sent with it. A head with
no body write after it (HEAD, 204, 304, a stream that has not started) goes out at the end of
the event loop's current pass, so nothing waits for more than that.

``abflow serve`` runs uvicorn with :class:`GatewayHttpProtocol`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GatewayHttpProtocol"]

_HEAD_START = b"HTTP/1.1 "
_INTERIM_START = b"HTTP/1.1 1"  # 100 Continue: the client waits for it before sending a body
_HEAD_END = b"\r\n\r\n"


class _OneWriteTransport:
    """A transport that sends a response head together with the write that follows it."""

    __slots__ = ("_head", "_release", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._release: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if self._release is not None:
                self._release.cancel()
                self._release = None
            self._transport.write(head + bytes(data))
        elif (
            isinstance(data, bytes)
            and data.endswith(_HEAD_END)
            and data.startswith(_HEAD_START)
            and not data.startswith(_INTERIM_START)
        ):
            self._head = data
            self._release = asyncio.get_running_loop().call_soon(self._write_head)
        else:
            self._transport.write(data)

    def _write_head(self) -> None:
        self._release = None
        head, self._head = self._head, None
        if head is not None:
            self._transport.write(head)

    def writelines(self, lines: Any) -> None:
        self._write_head()
        self._transport.writelines(lines)

    def write_eof(self) -> None:
        self._write_head()
        self._transport.write_eof()

    def close(self) -> None:
        if self._release is not None:
            self._release.cancel()
        self._write_head()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses each leave in one write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWriteTransport(transport))  # type: ignore[arg-type]
