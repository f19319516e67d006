"""Remote model servers over HTTP: MLflow/SageMaker ``invocations``, Open Inference
Protocol ``v2`` (KServe, Triton, Seldon MLServer) and Vertex-style endpoints.

What each protocol sends and how answers are read lives in :mod:`remote_io`; this module
owns the connection. Concurrent calls are micro-batched (:class:`RemoteBatcher`): the rows
of requests that arrive together go to the server as one request, and each caller gets its
own rows' answers (or its own error) back. Connections are kept alive in a pool per
backend: the lean client of :mod:`h1client` when the backend needs nothing more than
static headers, else an :class:`httpx.AsyncClient`. Endpoints that need credentials or
request signing (SageMaker SigV4, Vertex bearer tokens) take any :class:`httpx.Auth`: httpx
calls it on every request with the final body, which is what a signer needs.
:class:`HeaderAuth` covers the common case of headers from a function. A v2 backend reads
the model's metadata (``GET /v2/models/{name}``) before its first call, for the input
tensor's name, datatype and width, unless the config gives them.

With tracing on, ``trace_headers`` gives each prediction call the headers that carry the
current trace context (W3C ``traceparent``, the prediction span as parent), so the model
server's spans join the caller's trace. A batched call carries the context of the first
request in its batch (one call has one parent). With tracing off it is None and costs
nothing.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable, Generator, Mapping
from typing import Any
from typing import Protocol as TypingProtocol

import httpx
import numpy as np
import orjson

from abflow.errors import BackendTimeoutError, ConfigError
from abflow.serving.backends.deadlines import Deadlines
from abflow.serving.backends.failure import MAX_ERROR_BODY, RemoteModelError, failure_reason
from abflow.serving.backends.h1client import H1Pool
from abflow.serving.backends.remote_io import (
    OutputReader,
    Protocol,
    TensorSpec,
    encode_rows,
    read_predictions,
)
from abflow.serving.batching import RemoteBatcher
from abflow.spec import shown_reference

__all__ = ["HeaderAuth", "HttpBackend", "Protocol", "infer_protocol", "redact_url"]


class HeaderAuth(httpx.Auth):
    """Adds headers computed per request (a fresh token, a signature over the body)."""

    def __init__(self, headers: Mapping[str, str] | Callable[[httpx.Request], Mapping[str, str]]):
        self._headers = headers

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = self._headers(request) if callable(self._headers) else self._headers
        request.headers.update(headers)
        yield request

    @property
    def static_headers(self) -> Mapping[str, str] | None:
        """The headers, when they are the same on every request (None: computed per request)."""
        return None if callable(self._headers) else self._headers


class _Answer(TypingProtocol):
    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment: what may be logged, labelled and stored
    (credentials and API keys ride in those parts). One rule for every place that shows a
    model URL: :func:`abflow.spec.shown_reference`."""
    return shown_reference(url)


def infer_protocol(url: str) -> Protocol:
    """``v2`` for ``…/v2/models/NAME/infer`` URLs, ``invocations`` otherwise."""
    return "v2" if "/v2/models/" in url else "invocations"


_SPLIT_REASONS = frozenset({"status_4xx", "bad_output"})
"""Failures of a batch that one request's rows may have caused: each request is then sent
again on its own, so that its neighbours do not fall back with it."""

_NO_METADATA = frozenset({404, 405, 501})
"""Answers to ``GET /v2/models/NAME`` from a server that serves inference but no metadata
(no such route, or no GET on it): the input is sent as ``input-0`` FP64, as before."""


class HttpBackend:
    """A model served elsewhere, called over pooled HTTP connections."""

    def __init__(
        self,
        url: str,
        *,
        protocol: Protocol | None = None,
        version: str | None = None,
        n_features: int | None = None,
        timeout_seconds: float = 1.0,
        auth: httpx.Auth | None = None,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        columns: tuple[str, ...] | None = None,
        tensor: TensorSpec | None = None,
        output: OutputReader | None = None,
        output_name: str | None = None,
        output_path: tuple[str | int, ...] | None = None,
        batch: bool = True,
        max_batch_rows: int = 64,
        max_batch_wait_seconds: float = 0.002,
        max_batches_in_flight: int = 4,
        on_batch: Callable[[int], None] | None = None,
        trace_headers: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self.protocol: Protocol = protocol or infer_protocol(url)
        if self.protocol == "v2" and "/v2/models/" not in url:
            msg = f"a v2 backend URL must end in /v2/models/NAME/infer, got {self.shown_url!r}"
            raise ConfigError(msg)
        self._version = version or self.shown_url
        self._columns = tuple(columns) if columns else None
        self._n_features = n_features or (len(self._columns) if self._columns else None)
        self._tensor = tensor
        self._tensor_lock = asyncio.Lock()
        self._reader = output or OutputReader()
        self._output_name = output_name
        self._output_path = output_path
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._auth = auth
        self._timeout_seconds = timeout_seconds
        self._deadlines = Deadlines()
        self._trace_headers = trace_headers
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            limits=limits,
            auth=auth,
            transport=transport,
        )
        self._pool = self._lean_pool(transport, auth, max_connections)
        self._target = httpx.URL(url).raw_path.decode("ascii")  # path and query, as sent
        self._batcher = (
            RemoteBatcher(
                self._predict_rows,
                max_rows=max_batch_rows,
                max_wait_seconds=max_batch_wait_seconds,
                max_in_flight=max_batches_in_flight,
                split=lambda exc: failure_reason(exc) in _SPLIT_REASONS,
                on_batch=on_batch,
            )
            if batch
            else None
        )

    def _lean_pool(
        self,
        transport: httpx.AsyncBaseTransport | None,
        auth: httpx.Auth | None,
        max_connections: int,
    ) -> H1Pool | None:
        """The lean client when it can do all this backend needs: no injected transport,
        no auth beyond static headers, no user info in the URL (httpx sends it as Basic
        auth), no proxy configured for the URL (else httpx)."""
        headers = auth.static_headers if isinstance(auth, HeaderAuth) else None
        url = httpx.URL(self.url)
        if transport is not None or (auth is not None and headers is None) or url.userinfo:
            return None
        if url.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(url.host):
            return None
        # TLS trusts what httpx would (certifi, SSL_CERT_FILE / SSL_CERT_DIR).
        context = httpx.create_ssl_context() if url.scheme == "https" else None
        return H1Pool(
            self.url, max_connections=max_connections, headers=headers, ssl_context=context
        )

    @property
    def client_name(self) -> str:
        """Which HTTP client carries this backend's calls: ``lean`` or ``httpx``."""
        return "httpx" if self._pool is None else "lean"

    @property
    def reference(self) -> str:
        return self.shown_url

    @property
    def version(self) -> str:
        return self._version

    @property
    def n_features(self) -> int | None:
        return self._n_features

    @property
    def columns(self) -> tuple[str, ...] | None:
        return self._columns

    @property
    def batches(self) -> int:
        """Requests sent to the model server so far, batched (0 with batching off)."""
        return self._batcher.batches if self._batcher is not None else 0

    async def predict(self, rows: np.ndarray) -> list[Any]:
        if self._batcher is not None:
            return await self._batcher.predict(rows)
        return await self._predict_rows(rows)

    async def _predict_rows(self, rows: np.ndarray) -> list[Any]:
        """One request to the model server for ``rows``."""
        tensor = await self._input_tensor() if self.protocol == "v2" else None
        payload = encode_rows(
            rows,
            self.protocol,
            columns=self._columns,
            tensor=tensor,
            output_names=(self._output_name,) if self._output_name else (),
        )
        trace = self._trace_headers() if self._trace_headers is not None else None
        response = await self._send("POST", self.url, orjson.dumps(payload), trace)
        if response.status_code != 200:
            raise self._status_error(response)
        data = self._json(response)
        try:
            values = read_predictions(
                data,
                self.protocol,
                rows.shape[0],
                output_name=self._output_name,
                json_path=self._output_path,
            )
            return self._reader.read(values)
        except RemoteModelError as exc:
            msg = f"model server {self.shown_url}: {exc}"
            raise RemoteModelError(msg, exc.reason) from exc

    async def _send(
        self,
        method: str,
        url: str,
        content: bytes | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        if self._pool is not None:
            return await self._send_lean(method, url, content, extra_headers)
        headers = dict(extra_headers or {})
        if content is not None:
            headers["content-type"] = "application/json"
        try:
            return await self._client.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            msg = f"model server {self.shown_url} did not answer in time"
            raise BackendTimeoutError(msg) from exc
        except httpx.HTTPError as exc:
            msg = f"cannot reach model server {self.shown_url}: {type(exc).__name__}"
            raise RemoteModelError(msg, "connect") from exc

    async def _send_lean(
        self,
        method: str,
        url: str,
        content: bytes | None,
        extra_headers: Mapping[str, str] | None,
    ) -> _Answer:
        assert self._pool is not None
        target = self._target if url == self.url else httpx.URL(url).raw_path.decode("ascii")
        try:
            with self._deadlines.within(self._timeout_seconds):
                return await self._pool.request(method, target, content, extra_headers)
        except TimeoutError as exc:
            msg = f"model server {self.shown_url} did not answer in time"
            raise BackendTimeoutError(msg) from exc
        except OSError as exc:
            msg = f"cannot reach model server {self.shown_url}: {type(exc).__name__}"
            raise RemoteModelError(msg, "connect") from exc

    def _status_error(self, response: _Answer) -> RemoteModelError:
        body = response.text[:MAX_ERROR_BODY]
        status = response.status_code
        msg = f"model server {self.shown_url} answered {status}: {body}"
        return RemoteModelError(msg, "status_4xx" if status < 500 else "status_5xx")

    def _json(self, response: _Answer) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            msg = f"model server {self.shown_url} answered with invalid JSON"
            raise RemoteModelError(msg, "bad_output") from exc

    def read_metadata(self) -> None:
        """Read a v2 model's input tensor now (blocking; at registration, so that the row
        width is checked at the edge). Any failure leaves it to the first call."""
        if self.protocol != "v2" or self._tensor is not None:
            return
        url = httpx.URL(self.url)
        metadata_url = url.copy_with(path=url.path.removesuffix("/infer"))
        try:
            with httpx.Client(timeout=self._client.timeout, auth=self._auth) as client:
                response = client.get(metadata_url)
            if response.status_code == 200:
                self._tensor = TensorSpec.from_metadata(orjson.loads(response.content))
                self._n_features = self._n_features or self._tensor.width
        except (httpx.HTTPError, orjson.JSONDecodeError, ConfigError):
            return

    async def _input_tensor(self) -> TensorSpec:
        """The v2 input tensor: configured, else read once from the model's metadata."""
        if self._tensor is not None:
            return self._tensor
        async with self._tensor_lock:
            if self._tensor is None:
                url = httpx.URL(self.url)
                metadata_url = url.copy_with(path=url.path.removesuffix("/infer"))
                response = await self._send("GET", str(metadata_url))
                if response.status_code in _NO_METADATA:  # publishes none: the old default
                    self._tensor = TensorSpec()
                    return self._tensor
                if response.status_code != 200:
                    raise self._status_error(response)
                try:
                    self._tensor = TensorSpec.from_metadata(self._json(response))
                except ConfigError as exc:
                    msg = f"model server {self.shown_url}: {exc}"
                    raise RemoteModelError(msg, "bad_output") from exc
                if self._n_features is None:
                    self._n_features = self._tensor.width
            return self._tensor

    async def aclose(self) -> None:
        if self._batcher is not None:
            await self._batcher.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        await self._client.aclose()
