"""Remote model servers over HTTP, in the two protocols most platforms speak.

- ``invocations``: MLflow's scoring server and SageMaker-style endpoints, ``POST
  /invocations`` with ``{"inputs": [[...], ...]}``, answering ``{"predictions": [...]}`` (or
  a bare list).
- ``v2``: the Open Inference Protocol of KServe, Triton, Seldon MLServer, ``POST
  /v2/models/{name}/infer`` with one FP64 input tensor, answering ``outputs``.

One pooled :class:`httpx.AsyncClient` per backend keeps connections warm. Endpoints that
need credentials or request signing (SageMaker SigV4, Vertex bearer tokens) take any
:class:`httpx.Auth`: httpx calls it on every request with the final body, which is what a
signer needs. :class:`HeaderAuth` covers the common case of headers from a function.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, Literal

import httpx
import numpy as np
import orjson

from abflow.errors import BackendError, BackendTimeoutError, ConfigError

__all__ = ["HeaderAuth", "HttpBackend", "Protocol", "infer_protocol", "redact_url"]

Protocol = Literal["invocations", "v2"]


class HeaderAuth(httpx.Auth):
    """Adds headers computed per request (a fresh token, a signature over the body)."""

    def __init__(self, headers: Mapping[str, str] | Callable[[httpx.Request], Mapping[str, str]]):
        self._headers = headers

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = self._headers(request) if callable(self._headers) else self._headers
        request.headers.update(headers)
        yield request


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment: what may be logged, labelled and stored
    (credentials and API keys ride in those parts)."""
    try:
        return str(
            httpx.URL(url).copy_with(username=None, password=None, query=None, fragment=None)
        )
    except httpx.InvalidURL:
        return "<invalid URL>"


def infer_protocol(url: str) -> Protocol:
    """``v2`` for ``…/v2/models/NAME/infer`` URLs, ``invocations`` otherwise."""
    return "v2" if "/v2/models/" in url else "invocations"


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
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self.protocol: Protocol = protocol or infer_protocol(url)
        if self.protocol == "v2" and "/v2/models/" not in url:
            msg = f"a v2 backend URL must end in /v2/models/NAME/infer, got {self.shown_url!r}"
            raise ConfigError(msg)
        self._version = version or self.shown_url
        self._n_features = n_features
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            limits=limits,
            auth=auth,
            transport=transport,
        )

    @property
    def reference(self) -> str:
        return self.shown_url

    @property
    def version(self) -> str:
        return self._version

    @property
    def n_features(self) -> int | None:
        return self._n_features

    async def predict(self, rows: np.ndarray) -> list[Any]:
        payload = self._payload(rows)
        try:
            response = await self._client.post(
                self.url,
                content=orjson.dumps(payload),
                headers={"content-type": "application/json"},
            )
        except httpx.TimeoutException as exc:
            msg = f"model server {self.shown_url} did not answer in time"
            raise BackendTimeoutError(msg) from exc
        except httpx.HTTPError as exc:
            msg = f"cannot reach model server {self.shown_url}: {exc}"
            raise BackendError(msg) from exc
        if response.status_code != 200:
            body = response.text[:200]
            msg = f"model server {self.shown_url} answered {response.status_code}: {body}"
            raise BackendError(msg)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            msg = f"model server {self.shown_url} answered with invalid JSON"
            raise BackendError(msg) from exc
        outputs = self._outputs(data, rows.shape[0])
        if len(outputs) != rows.shape[0]:
            msg = f"model server {self.shown_url} returned {len(outputs)} outputs for {rows.shape[0]} rows"
            raise BackendError(msg)
        return outputs

    def _payload(self, rows: np.ndarray) -> dict[str, Any]:
        if self.protocol == "invocations":
            return {"inputs": rows.tolist()}
        return {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "data": rows.ravel().tolist(),
                }
            ]
        }

    def _outputs(self, data: Any, n_rows: int) -> list[Any]:
        if self.protocol == "invocations":
            predictions = data.get("predictions") if isinstance(data, dict) else data
            if not isinstance(predictions, list):
                msg = f"model server {self.shown_url} answered without a 'predictions' list"
                raise BackendError(msg)
            return predictions
        try:
            tensor = data["outputs"][0]
            flat = np.asarray(tensor["data"])
            shape = [int(s) for s in tensor.get("shape", [n_rows])]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            msg = f"model server {self.shown_url} answered without a valid 'outputs' tensor"
            raise BackendError(msg) from exc
        values: list[Any]
        if len(shape) >= 2 and int(np.prod(shape[1:])) > 1:
            values = flat.reshape(shape).tolist()
        else:
            values = flat.ravel().tolist()
        return values

    async def aclose(self) -> None:
        await self._client.aclose()
