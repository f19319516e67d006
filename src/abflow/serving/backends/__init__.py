"""Model backends: in-process models, remote HTTP model servers, and their guards.

:func:`build_backend` turns a model reference from an experiment spec (plus optional
per-reference options from the gateway config) into a guarded backend.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from abflow.errors import ConfigError
from abflow.serving.backends.base import ModelBackend
from abflow.serving.backends.http import HeaderAuth, HttpBackend
from abflow.serving.backends.local import InProcessBackend, OutputKind, load_model
from abflow.serving.backends.remote_io import OutputReader, TensorSpec, parse_json_path
from abflow.serving.backends.resilience import CircuitBreaker, GuardedBackend, RefusedBackend
from abflow.serving.batching import Execution

__all__ = [
    "BackendOptions",
    "CircuitBreaker",
    "GuardedBackend",
    "HeaderAuth",
    "HttpBackend",
    "InProcessBackend",
    "ModelBackend",
    "RefusedBackend",
    "build_backend",
]


class BackendOptions(BaseModel):
    """Per-model settings from the gateway config; every field has a working default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_ms: float | None = Field(default=None, gt=0, description="default: gateway setting")
    failure_threshold: int | None = Field(default=None, ge=1)
    reset_seconds: float | None = Field(default=None, gt=0)
    output: OutputKind = Field(
        default="auto",
        description="how an answer becomes the score: 'proba' (a class probability, see "
        "class_index), 'predict' (the answer as is), 'auto' (P(positive) of a two-class answer)",
    )
    class_index: int | None = Field(
        default=None, ge=0, description="output: proba: the class whose probability is the score"
    )
    output_name: str | None = Field(
        default=None, description="remote v2: the output tensor to request and read"
    )
    output_path: str | None = Field(
        default=None,
        description="remote: JSON path to the per-row list in a custom server's answer, "
        "e.g. '$.result.scores'",
    )
    protocol: Literal["invocations", "v2", "vertex"] | None = None
    columns: list[str] | None = Field(
        default=None,
        description="remote invocations/vertex: feature column names (sent as dataframe_split "
        "or named instances)",
    )
    signature_from: str | None = Field(
        default=None,
        description="remote: a models:/ or runs:/ reference whose MLflow signature names "
        "the columns",
    )
    input_name: str | None = Field(default=None, description="remote v2: input tensor name")
    datatype: Literal["FP32", "FP64", "INT64"] | None = Field(
        default=None, description="remote v2: input tensor datatype"
    )
    example: list[float] | dict[str, float] | None = Field(
        default=None,
        min_length=1,
        description="remote: one feature row (in column order, or column -> value) sent to "
        "the server at registration and by /readyz's probes; default: zeros of the row width",
    )
    version: str | None = Field(default=None, description="remote models: the version to log")
    n_features: int | None = Field(default=None, ge=1, description="remote models: row width")
    headers: dict[str, str] = Field(default_factory=dict, description="remote: static headers")
    bearer_token_env: str | None = Field(
        default=None, description="remote: send 'Bearer $VAR' read from this environment variable"
    )
    auth: str | None = Field(
        default=None,
        description="remote: 'module:attribute' naming an httpx.Auth, or a function "
        "(request) -> headers, for signed endpoints (SageMaker, Vertex)",
    )
    max_connections: int = Field(default=64, ge=1)
    batch: bool = Field(
        default=True,
        description="remote: send the rows of concurrent requests as one request (up to the "
        "gateway's batch_max_rows); false for servers that take one instance per call",
    )
    max_batches_in_flight: int = Field(
        default=4, ge=1, description="remote, batching on: requests outstanding at once"
    )
    checksum: str | None = Field(
        default=None,
        description="in-process models: SHA-256 of the artifacts recorded when the model "
        "entered the experiment; a mismatch refuses the model (its traffic falls back)",
    )


def build_backend(
    reference: str,
    options: BackendOptions | None = None,
    *,
    timeout_seconds: float = 1.0,
    failure_threshold: int = 5,
    reset_seconds: float = 30.0,
    max_batch_rows: int = 64,
    max_batch_wait_seconds: float = 0.002,
    execution: Execution = "auto",
    on_batch: Callable[[int], None] | None = None,
    trace_headers: Callable[[], Mapping[str, str]] | None = None,
) -> GuardedBackend:
    """A guarded backend for ``reference``: in-process for file:/python:/models:/runs:,
    HTTP for http(s)://. Loading happens here, once, not per request. ``trace_headers``
    (tracing on) gives an HTTP backend's calls the current trace context."""
    opts = options or BackendOptions()
    backend: ModelBackend
    if reference.startswith(("http://", "https://")):
        remote = HttpBackend(
            reference,
            protocol=opts.protocol,
            columns=_columns(opts),
            tensor=(
                TensorSpec(opts.input_name or "input-0", opts.datatype or "FP64", opts.n_features)
                if opts.input_name or opts.datatype
                else None
            ),
            output=OutputReader(opts.output, opts.class_index),
            output_name=opts.output_name,
            output_path=parse_json_path(opts.output_path) if opts.output_path else None,
            version=opts.version,
            n_features=opts.n_features,
            timeout_seconds=(opts.timeout_ms / 1000.0) if opts.timeout_ms else timeout_seconds,
            auth=_auth(opts),
            max_connections=opts.max_connections,
            batch=opts.batch,
            max_batch_rows=max_batch_rows,
            max_batch_wait_seconds=max_batch_wait_seconds,
            max_batches_in_flight=opts.max_batches_in_flight,
            on_batch=on_batch,
            trace_headers=trace_headers,
        )
        remote.read_metadata()
        backend = remote
    else:
        backend = InProcessBackend(
            load_model(reference, expected_checksum=opts.checksum),
            output=opts.output,
            class_index=opts.class_index,
            max_rows=max_batch_rows,
            max_wait_seconds=max_batch_wait_seconds,
            execution=execution,
            on_batch=on_batch,
        )
    breaker = CircuitBreaker(
        opts.failure_threshold or failure_threshold, opts.reset_seconds or reset_seconds
    )
    timeout = (opts.timeout_ms / 1000.0) if opts.timeout_ms else timeout_seconds
    return GuardedBackend(backend, timeout_seconds=timeout, breaker=breaker)


def _columns(opts: BackendOptions) -> tuple[str, ...] | None:
    if opts.columns:
        return tuple(opts.columns)
    if opts.signature_from:
        try:
            registry = importlib.import_module("abflow.registry.resolve")
        except ImportError as exc:
            msg = f"cannot read the signature of {opts.signature_from!r}: {exc}"
            raise ConfigError(msg) from exc
        columns: tuple[str, ...] | None = registry.input_columns(opts.signature_from)
        return columns
    return None


def _auth(opts: BackendOptions) -> httpx.Auth | None:
    headers = dict(opts.headers)
    if opts.bearer_token_env:
        token = os.environ.get(opts.bearer_token_env)
        if not token:
            msg = f"environment variable {opts.bearer_token_env} (bearer_token_env) is not set"
            raise ConfigError(msg)
        headers["authorization"] = f"Bearer {token}"
    if opts.auth:
        hook = _import_hook(opts.auth)
        if isinstance(hook, httpx.Auth):
            if headers:
                msg = "give either 'auth' (an httpx.Auth) or static headers, not both"
                raise ConfigError(msg)
            return hook
        if not callable(hook):
            msg = f"auth hook {opts.auth!r} is neither an httpx.Auth nor a function"
            raise ConfigError(msg)
        static = headers

        def merged(request: httpx.Request) -> dict[str, str]:
            return {**static, **hook(request)}

        return HeaderAuth(merged)
    return HeaderAuth(headers) if headers else None


def _import_hook(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot import auth hook {path!r}: {exc}"
        raise ConfigError(msg) from exc
