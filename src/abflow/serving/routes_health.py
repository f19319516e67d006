"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: models loaded, event
log running, not draining). Kubernetes restarts on the first and routes on the second.

A store outage does not make a gateway unready: predictions need only the models (tokens
seen before are checked from memory, events go to the local journal and spool), and a pod
taken out of the Service for it would only move its traffic to pods that have the same
outage. ``/readyz`` stays 200 and says what is degraded, in ``degraded``. Neither endpoint
touches the store, so neither can hang on it. Remote model servers that fail now are listed
in ``failing_backends`` from memory (see :mod:`abflow.serving.remote_health`): their
variants fall back to the control, so they do not make the gateway unready either. Their
URLs and last errors are shown only with a viewer's token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from abflow.errors import AuthError, StoreUnavailableError
from abflow.security.roles import Role
from abflow.serving.responses import json_response
from abflow.serving.services import services_of

__all__ = ["router"]

VIEWER_ONLY = frozenset({"backend", "error"})
"""What ``failing_backends`` shows only to a viewer: the model server's URL, as
``/v1/experiments`` does, and its last error, which may quote what the server echoed (a
request's features, a header)."""

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
    failing = services.remote_health.failing(services.gateway, services.config.backends)
    is_viewer = await _is_viewer(request)
    if failing and not is_viewer:
        failing = [{k: v for k, v in entry.items() if k not in VIEWER_ONLY} for entry in failing]
    document: dict[str, object] = {"status": "ready"}
    if is_viewer:  # experiment keys may name what is not public yet, as URLs may
        document["experiments"] = sorted(services.gateway.experiments)
    document |= {
        "experiment_count": len(services.gateway.experiments),
        "event_queue_depth": services.events.queue_depth,
        "degraded": services.degraded(),
        "failing_backends": failing,
    }
    return json_response(document)


async def _is_viewer(request: Request) -> bool:
    """Whether the caller may see model URLs and experiment keys (auth off, or a viewer's
    token). Probes send no token, so they never wait on the store for one."""
    services = services_of(request)
    if not services.settings.auth_enabled:
        return True
    authorization = request.headers.get("authorization")
    if authorization is None:
        return False
    try:
        await services.authenticator.authorize_async(authorization, Role.VIEWER)
    except (AuthError, StoreUnavailableError):
        return False
    return True
