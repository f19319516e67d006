"""``POST /v1/predict``: route a unit to a variant, predict, log, answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from abflow.monitoring.tracing import TRACE_HEADERS
from abflow.serving.fastpath import predict_document
from abflow.serving.http_errors import read_body
from abflow.serving.inputs import header_text
from abflow.serving.responses import json_response
from abflow.serving.services import services_of

__all__ = ["router"]

router = APIRouter(tags=["predict"])

_EXAMPLE = {
    "experiment": "demo",
    "unit_id": "user-42",
    "attributes": {"country": "NL"},
    "features": [0.1, -1.2, 0.3, 0.0, 2.1, -0.4, 0.9, 1.5],
}


@router.post(
    "/v1/predict",
    summary="Predict for one unit (one row or a batch of rows)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictIn"},
                    "example": _EXAMPLE,
                }
            },
        }
    },
    responses={
        200: {"description": "the variant, the prediction, the model version and a request id"},
    },
)
async def predict(request: Request) -> Response:
    """Assign the unit with the experiment's routing (forced overrides first), predict with
    the chosen variant's model (the control model for units outside the experiment, or as a
    fallback when the chosen model fails), log the exposure and the prediction durably, and
    answer. Shadow variants receive a copy in the background."""
    services = services_of(request)
    body = await read_body(request, services.settings.max_body_bytes)
    header = request.headers.get("x-request-id")
    # Starlette decodes headers as Latin-1: take the bytes back, then read them as UTF-8.
    request_id = None if header is None else header_text(header.encode("latin-1"), "x-request-id")
    carrier = {name: request.headers[name] for name in TRACE_HEADERS if name in request.headers}
    result = await predict_document(
        services, request.headers.get("authorization"), body, request_id, carrier
    )
    response = json_response(result)
    response.raw_headers.append((b"x-request-id", result["request_id"].encode()))
    return response
