"""The gateway's HTTP/1.1 protocol: ``POST /v1/predict`` answered by the protocol itself.

uvicorn runs every request as a task through the ASGI stack: its proxy-headers middleware,
the app, ``receive`` and ``send`` with a message dict each, and a check of every response
header. For the one hot route that is about a third of what uvicorn costs per request
(``bench/remote.py`` measures the gateway's CPU per request). Here uvicorn still parses the
request and keeps its connection state (keep-alive, pipelining, ``Expect: 100-continue``,
flow control, disconnects, graceful shutdown); only the task it starts for
``POST /v1/predict`` differs: it reads the body from uvicorn's request state, asks
:func:`~abflow.serving.fastpath.answer_predict` (the same code the ASGI fast path runs,
which ignores a query string as this does) and writes head and body in one write. Every
other request, a gateway started with ``ABFLOW_PREDICT_FAST_PATH=false``, and a request
uvicorn answers with 503 (its concurrency limit) go through ASGI as before.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

from abflow.serving.fastpath import PREDICT_PATH, BodyTooLarge, Header, answer_predict
from abflow.serving.http_protocol import BoundedHeadProtocol
from abflow.serving.services import Services

__all__ = ["GatewayProtocol"]

logger = logging.getLogger("uvicorn.error")  # where uvicorn logs an app's failures

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_MAX_WRAPPERS = 8  # middleware uvicorn may put around the app (proxy headers, trace logging)


class GatewayProtocol(BoundedHeadProtocol):
    """:class:`BoundedHeadProtocol` that answers ``POST /v1/predict`` without ASGI."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        scope = cycle.scope
        services = (
            _fast_services(app)
            if scope["path"] == PREDICT_PATH and scope["method"] == "POST" and app is self.app
            else None
        )
        if services is None:
            super()._start_asgi_task(cycle, app)
            return
        reset = getattr(self.config, "reset_contextvars", False)  # newer uvicorn releases
        context = contextvars.Context() if reset else None
        task = self.loop.create_task(_answer(cycle, services), context=context)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)


def _fast_services(app: Any) -> Services | None:
    """The gateway's services behind uvicorn's wrappers, if its prediction fast path is on."""
    for _ in range(_MAX_WRAPPERS):
        if getattr(app, "fast_predict", False):
            services: Services = app.state.abflow
            return services
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


async def _answer(cycle: RequestResponseCycle, services: Services) -> None:
    """What ``cycle.run_asgi`` does for an app, for the prediction route."""
    try:

        async def read_body(declared: int | None, max_bytes: int) -> bytes:
            return await _read_body(cycle, declared, max_bytes)

        status, headers, payload = await answer_predict(services, cycle.scope["headers"], read_body)
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if not cycle.disconnected:
            _write(cycle, status, headers, payload)
    except BaseException as exc:  # as uvicorn's run_asgi: the connection, not the server, ends
        logger.error("Exception in ASGI application\n", exc_info=exc)
        if not cycle.response_started:
            await cycle.send_500_response()
        else:
            cycle.transport.close()
    finally:
        cycle.on_response = lambda: None


async def _read_body(cycle: RequestResponseCycle, declared: int | None, max_bytes: int) -> bytes:
    """The body uvicorn gathers in ``cycle.body``, waited for as ``cycle.receive`` waits."""
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(declared)
    if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
        cycle.transport.write(_CONTINUE)
        cycle.waiting_for_100_continue = False
    cycle.flow.resume_reading()  # as every receive() does: pipelined bytes read alike
    while cycle.more_body and not cycle.disconnected:
        if len(cycle.body) > max_bytes:
            raise BodyTooLarge(len(cycle.body))
        await cycle.message_event.wait()
        cycle.message_event.clear()
        cycle.flow.resume_reading()
    body = bytes(cycle.body)
    cycle.body = bytearray()
    if len(body) > max_bytes:
        raise BodyTooLarge(len(body))
    return body


def _write(cycle: RequestResponseCycle, status: int, headers: list[Header], payload: bytes) -> None:
    """Head and body in one write, with the headers uvicorn adds (server, date, close)."""
    content = [STATUS_LINE[status]]
    for name, value in (*cycle.default_headers, *headers):
        if HEADER_VALUE_RE.search(value):
            msg = "Invalid HTTP header value."
            raise RuntimeError(msg)
        content += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        content.append(b"connection: close\r\n")
    content += (b"\r\n", payload)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    if cycle.access_log:
        scope = cycle.scope
        client = scope.get("client")
        cycle.access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            f"{client[0]}:{client[1]}" if client else "",
            scope["method"],
            scope["path"],
            scope["http_version"],
            status,
        )
    cycle.transport.write(b"".join(content))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
