"""HTTP mapping of abflow errors: the one place where the domain meets status codes.

Every refusal has the same shape, ``{"error": "<kind>", "detail": "<one sentence>"}``, and
the detail names the field at fault. Bad input is a 4xx, never a 500.
"""

from __future__ import annotations

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

__all__ = ["install_error_handlers", "read_body", "status_for"]

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


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response(
        {"error": "http_error", "detail": exc.detail}, status=exc.status_code, headers=exc.headers
    )


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
