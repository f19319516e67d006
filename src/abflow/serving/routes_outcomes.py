"""``POST /v1/outcomes``: what happened after a prediction (labels, conversions, revenue)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from abflow.errors import InvalidArgumentError
from abflow.events.sink import UNRESOLVED_UNIT, append_events, outcome_row
from abflow.security.roles import Role
from abflow.security.tokens import TokenRecord
from abflow.serving.auth import require
from abflow.serving.http_errors import read_body
from abflow.serving.inputs import OutcomesIn, parse_body
from abflow.serving.responses import json_response
from abflow.serving.services import services_of

__all__ = ["router"]

router = APIRouter(tags=["outcomes"])


@router.post(
    "/v1/outcomes",
    summary="Record outcomes, joined to predictions by request id or unit id",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/OutcomesIn"},
                    "example": {
                        "outcomes": [
                            {"request_id": "5f0c…", "name": "converted", "value": 1},
                            {"unit_id": "user-42", "name": "revenue", "value": 12.5},
                        ]
                    },
                }
            },
        }
    },
)
async def record_outcomes(
    request: Request, _token: Annotated[TokenRecord | None, Depends(require(Role.SERVICE))]
) -> Response:
    """Each outcome needs a ``unit_id`` or a ``request_id``. With a request id this process
    answered recently the unit and experiment are filled in here; otherwise (another worker,
    replica or a restarted gateway answered it) the outcome is logged with its request id
    alone and analysis joins it to that prediction in the store. All outcomes are checked
    before any is logged, so a rejected batch leaves nothing half-written."""
    services = services_of(request)
    body = await read_body(request, services.settings.max_body_bytes)
    payload = parse_body(OutcomesIn, body, max_bytes=services.settings.max_body_bytes)
    if len(payload.outcomes) > services.settings.max_rows:
        msg = f"outcomes: {len(payload.outcomes)} items is over the limit of {services.settings.max_rows}"
        raise InvalidArgumentError(msg)
    gateway = services.gateway
    rows = []
    for index, outcome in enumerate(payload.outcomes):
        unit_id = outcome.unit_id
        experiment_key = outcome.experiment
        if outcome.request_id is not None:
            known = gateway.recall(outcome.request_id)
            if known is not None:
                unit_id = unit_id or known[0]
                experiment_key = experiment_key or known[1]
            elif unit_id is None:
                unit_id = UNRESOLVED_UNIT  # the store joins it by request id at analysis
        if unit_id is None:
            msg = f"outcomes[{index}].unit_id: give unit_id or request_id"
            raise InvalidArgumentError(msg)
        rows.append(
            outcome_row(
                unit_id=unit_id,
                name=outcome.name,
                value=outcome.value,
                request_id=outcome.request_id,
                experiment_key=experiment_key,
                ts=outcome.ts,
            )
        )
    append_events(services.events, [("outcome", row) for row in rows])  # all or none
    return json_response(
        {"accepted": len(rows), "event_ids": [row["event_id"] for row in rows]}, status=202
    )
