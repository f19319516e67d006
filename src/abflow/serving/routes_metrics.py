"""``GET /metrics``: Prometheus exposition (viewer token, unless metrics are public).

With several workers the answer merges every worker's metric files, so it is built on a
worker thread rather than on the event loop that serves predictions. Nothing here waits on
the store: the scraper's token is checked like any other (from memory once seen).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from abflow.monitoring.metrics import CONTENT_TYPE_LATEST
from abflow.security.roles import Role
from abflow.serving.services import services_of

__all__ = ["router"]

router = APIRouter(tags=["observability"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    services = services_of(request)
    settings = services.settings
    if settings.auth_enabled and not settings.metrics_public:
        authorization = request.headers.get("authorization")
        await services.authenticator.authorize_async(authorization, Role.VIEWER)
    body = await asyncio.to_thread(services.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
