"""Remote model platforms: a request-signing hook on the HTTP backend, against a real server.

A stand-in for a SageMaker- or Vertex-style endpoint runs on 127.0.0.1 and refuses any
request whose HMAC signature (over method, path and body) does not verify.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.testing import assert_allclose

from abflow.errors import BackendError
from abflow.serving.backends import HeaderAuth, HttpBackend

SECRET = b"endpoint-secret"


def _signature(method: bytes, path: bytes, body: bytes) -> str:
    return hmac.new(SECRET, method + b"\n" + path + b"\n" + body, hashlib.sha256).hexdigest()


def sign(request: httpx.Request) -> dict[str, str]:
    """The hook under test: signs the final request, body included."""
    return {
        "x-signature": _signature(request.method.encode(), request.url.raw_path, request.content)
    }


class _Endpoint(BaseHTTPRequestHandler):
    """Scores ``sum(row)`` per row; 403 on a bad signature. Speaks invocations and v2."""

    seen: list[str]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        given = self.headers.get("x-signature", "")
        type(self).seen.append(given)
        if not hmac.compare_digest(given, _signature(b"POST", self.path.encode(), body)):
            self._answer(403, {"message": "signature does not match"})
            return
        request = json.loads(body)
        if self.path.endswith("/invocations"):
            rows = np.asarray(request["inputs"], dtype=float)
            self._answer(200, {"predictions": rows.sum(axis=1).tolist()})
            return
        tensor = request["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=float).reshape(tensor["shape"])
        scores = rows.sum(axis=1)
        output = {"name": "score", "shape": [len(scores)], "datatype": "FP64"}
        self._answer(200, {"outputs": [{**output, "data": scores.tolist()}]})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[str, type[_Endpoint]]]:
    handler = type("Endpoint", (_Endpoint,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def _predict(backend: HttpBackend, rows: np.ndarray) -> list[Any]:
    try:
        return await backend.predict(rows)
    finally:
        await backend.aclose()


@pytest.mark.parametrize("path", ["/endpoints/fraud/invocations", "/v2/models/fraud/infer"])
def test_signed_requests_are_served(
    endpoint: tuple[str, type[_Endpoint]], path: str, rng: np.random.Generator
) -> None:
    base, handler = endpoint
    rows = rng.normal(size=(5, 3))
    backend = HttpBackend(base + path, auth=HeaderAuth(sign), timeout_seconds=5)
    scores = asyncio.run(_predict(backend, rows))
    assert_allclose(scores, rows.sum(axis=1))
    assert handler.seen[-1] != ""


def test_unsigned_or_wrongly_signed_requests_are_refused(
    endpoint: tuple[str, type[_Endpoint]],
) -> None:
    base, _ = endpoint
    rows = np.ones((2, 3))
    unsigned = HttpBackend(base + "/endpoints/fraud/invocations", timeout_seconds=5)
    with pytest.raises(BackendError, match="answered 403"):
        asyncio.run(_predict(unsigned, rows))
    stale_signature = HeaderAuth({"x-signature": _signature(b"POST", b"/other", b"{}")})
    wrong = HttpBackend(
        base + "/endpoints/fraud/invocations", auth=stale_signature, timeout_seconds=5
    )
    with pytest.raises(BackendError, match="signature does not match"):
        asyncio.run(_predict(wrong, rows))
