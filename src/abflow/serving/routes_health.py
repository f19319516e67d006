"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: models loaded, event
log running, not draining). Kubernetes restarts on the first and routes on the second.

A store outage does not make a gateway unready: predictions need only the models (tokens
seen before are checked from memory, events go to the local journal and spool), and a pod
taken out of the Service for it would only move its traffic to pods that have the same
outage. ``/readyz`` stays 200 and says what is degraded, in ``degraded``. Neither endpoint
touches the store, so neither can hang on it. Remote model servers that fail now are listed
in ``failing_backends`` from memory (see :mod:`abflow.serving.remote_health`): their
variants fall back to the control, so they do not make the gateway unready either.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from abflow.serving.responses import json_response
from abflow.serving.services import services_of

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness")
async def readyz(request: Request) -> Response:
    services = services_of(request)
    if services.is_draining:
        return json_response({"status": "draining"}, status=503)
    if not services.is_ready:
        return json_response({"status": "starting", "problems": services.problems}, status=503)
    return json_response(
        {
            "status": "ready",
            "experiments": sorted(services.gateway.experiments),
            "event_queue_depth": services.events.queue_depth,
            "degraded": services.degraded(),
            "failing_backends": services.remote_health.failing(
                services.gateway, services.config.backends
            ),
        }
    )
