"""uvicorn's httptools protocol with a bound on the size of a request's head.

httptools buffers a request line and headers of any size: one 200 MB header to
``/healthz``, which needs no token, doubled the gateway's memory. A head still incomplete
after :data:`MAX_HEAD_BYTES` is answered ``431 Request Header Fields Too Large`` and the
connection closed, as h11 and nginx refuse theirs. Only the reads in which no head ended
are counted (httptools says when a head ends, not where), so a large body sent in the same
write as its head is never taken for a large head, a head that arrives in one read (up to
256 KiB) passes, and the memory a head can take stays under the bound plus one read.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "BoundedHeadProtocol"]

MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers together (h11 allows 16 KiB, nginx 32 KiB by default)."""

_REASON = f"request line and headers over {MAX_HEAD_BYTES} bytes\n".encode()
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_REASON)).encode() + b"\r\n\r\n" + _REASON
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses a request head over :data:`MAX_HEAD_BYTES`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False  # the parser is reading a request line and headers
        self._head_bytes = 0  # of that head, counted chunk by chunk
        self._heads_ended = 0  # heads completed, ever: did one end within a chunk?

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_ended += 1
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        ended = self._heads_ended
        super().data_received(data)
        # A body (even one still arriving after the answer, as after a 413) is never
        # counted; a head waiting behind an unanswered request is.
        if self._in_head and self._heads_ended == ended and not self.transport.is_closing():
            self._head_bytes += len(data)  # no head ended in this chunk: all of it is head
            if self._head_bytes > MAX_HEAD_BYTES:
                self.transport.write(_TOO_LARGE)
                self.transport.close()
