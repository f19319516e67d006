"""Loopback model servers that check payloads as strictly as real ones do.

- v2 (Triton / MLServer style): ``GET /v2/models/{name}`` publishes the input tensor's name,
  datatype and shape; ``/infer`` refuses (400) any other name, datatype, shape or data
  length, and returns only the outputs the request names (all of them when it names none,
  the label first, as ONNX classifiers do).
- vertex: ``POST /v1/endpoints/fraud:predict`` takes ``{"instances": [[...], ...]}`` only
  and answers ``{"predictions": [[p0, p1], ...]}``.
- custom: answers ``{"result": {"scores": [...]}}``; ``/text`` answers string labels and
  ``/broken`` answers a document without predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DTYPES: dict[str, Any] = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _refuse(message: str) -> Response:
    return _json({"error": message}, 400)


def v2_outputs(model: Any, rows: np.ndarray) -> dict[str, tuple[str, np.ndarray]]:
    """What the v2 server computes for ``rows`` (already cast to the declared datatype)."""
    proba = model.predict_proba(rows.astype(np.float64)).astype(np.float32)
    return {
        "label": ("INT64", model.predict(rows.astype(np.float64)).astype(np.int64)),
        "probabilities": ("FP32", proba),
    }


def strict_app(model: Any, *, input_name: str, datatype: str, width: int) -> Starlette:
    name = "fraud"

    async def metadata(request: Request) -> Response:
        if request.path_params["name"] != name:
            return _json({"error": "unknown model"}, 404)
        return _json(
            {
                "name": name,
                "platform": "onnxruntime_onnx",
                "inputs": [{"name": input_name, "datatype": datatype, "shape": [-1, width]}],
                "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
                ],
            }
        )

    async def infer(request: Request) -> Response:
        body = orjson.loads(await request.body())
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1:
            return _refuse(f"expected 1 input, got {inputs!r:.80}")
        tensor = inputs[0]
        if tensor.get("name") != input_name:
            return _refuse(f"unexpected inference input '{tensor.get('name')}'")
        if tensor.get("datatype") != datatype:
            return _refuse(
                f"input '{input_name}' datatype {tensor.get('datatype')}, expected {datatype}"
            )
        shape = tensor.get("shape")
        data = tensor.get("data")
        if not (isinstance(shape, list) and len(shape) == 2 and shape[1] == width):
            return _refuse(f"input '{input_name}' shape {shape}, expected [-1,{width}]")
        if not isinstance(data, list) or len(data) != shape[0] * width:
            return _refuse("data length does not match shape")
        if datatype == "INT64" and not all(isinstance(v, int) for v in data):
            return _refuse("INT64 data must be integers")
        rows = np.asarray(data, dtype=DTYPES[datatype]).reshape(shape)
        computed = v2_outputs(model, rows)
        wanted = [o["name"] for o in body.get("outputs", [])] or list(computed)
        unknown = [w for w in wanted if w not in computed]
        if unknown:
            return _refuse(f"unknown outputs {unknown}")
        outputs = [
            {
                "name": out,
                "datatype": computed[out][0],
                "shape": list(computed[out][1].shape),
                "data": computed[out][1].ravel().tolist(),
            }
            for out in wanted
        ]
        return _json({"model_name": name, "outputs": outputs})

    async def vertex(request: Request) -> Response:
        body = orjson.loads(await request.body())
        instances = body.get("instances") if isinstance(body, dict) else None
        if set(body) != {"instances"} or not isinstance(instances, list):
            return _refuse("the request must be {'instances': [...]}")
        if not all(isinstance(i, list) and len(i) == width for i in instances):
            return _refuse(f"each instance must be a list of {width} numbers")
        proba = model.predict_proba(np.asarray(instances, dtype=np.float64))
        return _json({"predictions": proba.tolist(), "deployedModelId": "7"})

    async def custom(request: Request) -> Response:
        rows = np.asarray(orjson.loads(await request.body())["inputs"], dtype=np.float64)
        return _json({"result": {"scores": model.predict_proba(rows)[:, 1].tolist()}})

    async def text(request: Request) -> Response:
        rows = orjson.loads(await request.body())["inputs"]
        return _json({"predictions": ["fraud" for _ in rows]})

    async def broken(request: Request) -> Response:
        return _json({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v2/models/{name}", metadata, methods=["GET"]),
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/v1/endpoints/fraud:predict", vertex, methods=["POST"]),
            Route("/custom/invocations", custom, methods=["POST"]),
            Route("/text/invocations", text, methods=["POST"]),
            Route("/broken/invocations", broken, methods=["POST"]),
        ]
    )
