"""A real model server for tests: a scikit-learn model behind uvicorn on 127.0.0.1.

Speaks MLflow/SageMaker-style ``POST /invocations`` and the Open Inference Protocol v2
``POST /v2/models/{name}/infer``; ``/signed/invocations`` also demands an HMAC signature of
the body, like a signed cloud endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SECRET = b"test-signing-key"


def signature(body: bytes) -> str:
    return hmac.new(SECRET, body, hashlib.sha256).hexdigest()


def model_app(model: Any, name: str = "fraud", *, delay_seconds: float = 0.0) -> Starlette:
    def proba(rows: Any) -> list[float]:
        if delay_seconds:
            time.sleep(delay_seconds)
        values: list[float] = model.predict_proba(np.asarray(rows, dtype=float))[:, 1].tolist()
        return values

    async def invocations(request: Request) -> Response:
        data = orjson.loads(await request.body())
        return Response(
            orjson.dumps({"predictions": proba(data["inputs"])}), media_type="application/json"
        )

    async def signed(request: Request) -> Response:
        body = await request.body()
        if not hmac.compare_digest(request.headers.get("x-signature", ""), signature(body)):
            return Response(b'{"error": "bad signature"}', status_code=401)
        return await invocations_from(body)

    async def invocations_from(body: bytes) -> Response:
        data = orjson.loads(body)
        return Response(
            orjson.dumps({"predictions": proba(data["inputs"])}), media_type="application/json"
        )

    async def infer(request: Request) -> Response:
        if request.path_params["name"] != name:
            return Response(b'{"error": "unknown model"}', status_code=404)
        tensor = orjson.loads(await request.body())["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=float).reshape(tensor["shape"])
        scores = proba(rows)
        outputs = [
            {"name": "probability", "shape": [len(scores), 1], "datatype": "FP64", "data": scores}
        ]
        return Response(
            orjson.dumps({"model_name": name, "model_version": "3", "outputs": outputs}),
            media_type="application/json",
        )

    return Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/signed/invocations", signed, methods=["POST"]),
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        ]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running(app: Starlette, **options: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; always stopped afterwards.
    ``options`` go to ``uvicorn.Config`` (e.g. ``timeout_keep_alive``, ``http``, or
    ``lifespan="on"`` for an app with a lifespan)."""
    port = free_port()
    defaults: dict[str, Any] = {"log_level": "warning", "lifespan": "off", "ws": "none"}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **(defaults | options))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120  # generous: a loaded machine starts slowly
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                msg = "model server did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
