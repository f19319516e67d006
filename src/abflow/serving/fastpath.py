"""A direct ASGI handler for ``POST /v1/predict``, ahead of the framework's dispatch.

FastAPI's layers (middleware stack, route matching, dependency solving, response objects)
cost more per request than routing, auth and durable logging together. The prediction
path is the one hot endpoint, so the app answers it here with the same steps, errors and
metrics as the documented route (which remains for the OpenAPI schema, and serves when
``ABFLOW_PREDICT_FAST_PATH=false``). Everything else goes through FastAPI untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from abflow.errors import AbflowError, InvalidSpecError
from abflow.monitoring.tracing import TRACE_HEADERS
from abflow.security.roles import Role
from abflow.serving.http_errors import status_for
from abflow.serving.inputs import PredictIn, header_text, parse_body
from abflow.serving.services import Services

__all__ = [
    "PREDICT_PATH",
    "BodyTooLarge",
    "answer_predict",
    "predict_document",
    "serve_predict",
]

logger = logging.getLogger(__name__)

PREDICT_PATH = "/v1/predict"
_JSON = (b"content-type", b"application/json")
_TRACE_HEADERS = frozenset(name.encode() for name in TRACE_HEADERS)


async def predict_document(
    services: Services,
    authorization: str | None,
    body: bytes,
    request_id: str | None,
    trace_carrier: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Authorise, parse and predict: the one implementation behind both ways in.
    ``trace_carrier`` holds the caller's ``traceparent`` (and friends): the prediction
    span joins that trace."""
    if services.settings.auth_enabled:
        await services.authenticator.authorize_async(authorization, Role.SERVICE)
    payload = parse_body(PredictIn, body, max_bytes=services.settings.max_body_bytes)
    gateway = services.gateway
    if trace_carrier:
        with gateway.tracer.joined(trace_carrier):
            return await gateway.predict(payload, request_id)
    return await gateway.predict(payload, request_id)


class BodyTooLarge(Exception):
    """A request body over ``max_body_bytes`` (declared, or counted as it arrives): 413."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


Header = tuple[bytes, bytes]
BodyReader = Callable[[int | None, int], Awaitable[bytes]]
"""Reads the whole body, given its declared length and the limit; BodyTooLarge past it."""


async def answer_predict(
    services: Services, request_headers: Iterable[Header], read_body: BodyReader
) -> tuple[int, list[Header], bytes]:
    """Status, headers and JSON body of the answer to one ``POST /v1/predict``: what both
    ways in (ASGI below, the HTTP protocol in :mod:`abflow.serving.gateway_protocol`)
    send. Every error becomes its answer here; the request is counted in the metrics."""
    started = time.perf_counter()
    authorization: str | None = None
    raw_request_id: bytes | None = None
    declared: int | None = None
    carrier: dict[str, str] | None = None
    for name, value in request_headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            declared = int(value) if value.isdigit() else None
        elif name == b"x-request-id":
            raw_request_id = value
        elif name in _TRACE_HEADERS:
            carrier = carrier or {}
            carrier[name.decode()] = value.decode("latin-1")
    max_bytes = services.settings.max_body_bytes
    headers = [_JSON]
    try:
        body = await read_body(declared, max_bytes)
        request_id = None if raw_request_id is None else header_text(raw_request_id, "x-request-id")
        document = await predict_document(services, authorization, body, request_id, carrier)
        status = 200
        headers.append((b"x-request-id", document["request_id"].encode()))
    except BodyTooLarge as exc:
        status = 413
        document = {
            "error": "http_error",
            "detail": f"body: {exc.size} bytes is over the limit of {max_bytes}",
        }
    except AbflowError as exc:
        status, kind = status_for(exc)
        document = {"error": kind, "detail": str(exc).split("\n", 1)[0]}
        if isinstance(exc, InvalidSpecError):
            document["problems"] = exc.problems
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
    except Exception:
        logger.exception("unexpected error in POST /v1/predict")
        status = 500
        document = {"error": "internal_error", "detail": "unexpected error; see the gateway log"}
    payload = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    headers.append((b"content-length", str(len(payload)).encode()))
    services.metrics.observe_request(PREDICT_PATH, status, time.perf_counter() - started)
    return status, headers, payload


async def serve_predict(services: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /v1/predict`` on the raw ASGI interface."""

    async def read_body(declared: int | None, max_bytes: int) -> bytes:
        if declared is not None and declared > max_bytes:
            raise BodyTooLarge(declared)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(size)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    status, headers, payload = await answer_predict(services, scope["headers"], read_body)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
