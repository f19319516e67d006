"""HTTP mapping of abflow errors: the one place where the domain meets status codes.

Every refusal has the same shape, ``{"error": "<kind>", "detail": "<one sentence>"}``, and
the detail names the field at fault. Bad input is a 4xx, never a 500. The shape and the
kinds each status can carry are exported (``ERROR_SCHEMA``, ``error_kinds``) so that the
OpenAPI document is built from this table rather than restated beside it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from abflow.errors import (
    AbflowError,
    ArtifactChecksumError,
    AuthenticationError,
    BackendError,
    BackendTimeoutError,
    CircuitOpenError,
    ConfigError,
    ExperimentNotFoundError,
    FeatureError,
    InvalidArgumentError,
    InvalidSpecError,
    ModelNotFoundError,
    PermissionDeniedError,
    RegistryError,
    StoreError,
    StoreUnavailableError,
)
from abflow.serving.responses import json_response

__all__ = [
    "ERROR_SCHEMA",
    "HTTP_ERROR_KIND",
    "error_kinds",
    "install_error_handlers",
    "read_body",
    "status_for",
]

HTTP_ERROR_KIND = "http_error"
"""Kind of refusals raised as HTTP exceptions (an oversized body: 413)."""

_STATUS: tuple[tuple[type[AbflowError], int, str], ...] = (
    (AuthenticationError, 401, "unauthenticated"),
    (PermissionDeniedError, 403, "forbidden"),
    (ExperimentNotFoundError, 404, "not_found"),
    (InvalidSpecError, 422, "invalid_spec"),
    (FeatureError, 422, "invalid_features"),
    (InvalidArgumentError, 422, "invalid_request"),
    (ConfigError, 422, "invalid_config"),
    (ModelNotFoundError, 422, "model_not_found"),
    (ArtifactChecksumError, 422, "artifact_checksum"),
    (RegistryError, 503, "registry_unavailable"),
    (BackendTimeoutError, 504, "model_timeout"),
    (CircuitOpenError, 503, "model_unavailable"),
    (BackendError, 502, "model_error"),
    (StoreUnavailableError, 503, "store_unavailable"),
    (StoreError, 500, "store_error"),
)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "Every refusal: its kind and one sentence that names the field at fault.",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "the kind of refusal, e.g. invalid_request"},
        "detail": {
            "type": "string",
            "description": "one sentence; for bad input it starts with the field at fault",
        },
        "problems": {
            "type": "array",
            "items": {"type": "string"},
            "description": "every problem found in an experiment spec (invalid_spec only)",
        },
    },
    "additionalProperties": False,
}
"""JSON Schema of every error body the gateway sends (handlers below and the fast path)."""

# Statuses the framework raises itself, with the kind their handler gives them.
_FRAMEWORK_KINDS: tuple[tuple[int, str], ...] = ((413, HTTP_ERROR_KIND), (422, "invalid_request"))


def error_kinds(status: int) -> tuple[str, ...]:
    """The ``error`` values a refusal with ``status`` can carry, in table order."""
    names = [name for _, code, name in _STATUS if code == status]
    names += [name for code, name in _FRAMEWORK_KINDS if code == status]
    return tuple(dict.fromkeys(names))


def status_for(exc: AbflowError) -> tuple[int, str]:
    """HTTP status and error kind of an abflow error (500 for an unexpected kind)."""
    for kind, status, name in _STATUS:
        if isinstance(exc, kind):
            return status, name
    return 500, "internal_error"


async def _abflow_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AbflowError)
    status, name = status_for(exc)
    body: dict[str, object] = {"error": name, "detail": str(exc).split("\n", 1)[0]}
    if isinstance(exc, InvalidSpecError):
        body["problems"] = exc.problems
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return json_response(body, status=status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        details.append(f"{where}: {error.get('msg', 'invalid')}")
    return json_response({"error": "invalid_request", "detail": "; ".join(details)}, status=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = exc.headers
    if exc.status_code == 405:
        allowed = _documented_methods(request)
        if allowed is not None:
            headers = {"allow": allowed}
    return json_response(
        {"error": HTTP_ERROR_KIND, "detail": exc.detail},
        status=exc.status_code,
        headers=headers,
    )


def _documented_methods(request: Request) -> str | None:
    """The methods the OpenAPI document declares at this path (with HEAD beside GET), or
    None for a path it does not describe. The router's own ``Allow`` names only the first
    route's methods, so ``OPTIONS /v1/experiments`` advertised GET and hid POST."""
    segments = request.url.path.split("/")
    for template, operations in request.app.openapi().get("paths", {}).items():
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            part == segment or (part.startswith("{") and segment)
            for part, segment in zip(parts, segments, strict=True)
        ):
            methods = {method.upper() for method in operations}
            if "GET" in methods:
                methods.add("HEAD")
            return ", ".join(sorted(methods))
    return None


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AbflowError, _abflow_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``max_bytes``.

    The declared length is checked before reading, and a chunked body is counted while it
    streams in, so an oversized request never sits in memory whole.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        _too_large(int(declared), max_bytes)
    if declared is not None:
        body = await request.body()
        if len(body) > max_bytes:
            _too_large(len(body), max_bytes)
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            _too_large(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, max_bytes: int) -> None:
    detail = f"body: {size} bytes is over the limit of {max_bytes}"
    raise HTTPException(status_code=413, detail=detail)
