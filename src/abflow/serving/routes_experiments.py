"""``/v1/experiments``: list, inspect and register the experiments this gateway serves."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from abflow.errors import InvalidSpecError
from abflow.security.roles import Role
from abflow.security.tokens import TokenRecord
from abflow.serving.auth import require
from abflow.serving.gateway import Gateway
from abflow.serving.http_errors import read_body
from abflow.serving.live import LiveExperiment
from abflow.serving.model_policy import check_spec
from abflow.serving.responses import json_response
from abflow.serving.services import services_of
from abflow.serving.settings import policy_for
from abflow.spec import ExperimentSpec, parse_experiment, shown_reference, shown_spec
from abflow.targeting.conditions import saved_group_ids

__all__ = ["describe", "router"]

router = APIRouter(tags=["experiments"])


def describe(gateway: Gateway, live: LiveExperiment, *, with_spec: bool = False) -> dict[str, Any]:
    """What a client needs to know about a live experiment (and its spec, on request)."""
    spec = live.spec
    weights = spec.effective_weights
    document: dict[str, Any] = {
        "key": spec.key,
        "name": spec.name,
        "unit": spec.unit,
        "version": live.version,
        "phase": live.phase,
        "coverage": spec.coverage,
        "active": spec.active,
        "is_default": gateway.default_key == spec.key,
        "variants": [
            {
                "name": variant.name,
                "model": shown_reference(variant.model),
                "model_version": backend.version,
                "checksum": _checksum(backend),
                "weight": weights[index],
                "is_shadow": index in live.shadow,
                "circuit": backend.breaker.state,
            }
            for index, (variant, backend) in enumerate(
                zip(spec.variants, live.backends, strict=True)
            )
        ],
    }
    if with_spec:
        document["spec"] = shown_spec(spec)
    return document


def _checksum(backend: Any) -> str | None:
    model = getattr(backend.inner, "model", None)
    return getattr(model, "checksum", None)


@router.get("/v1/experiments", summary="List live experiments")
async def list_experiments(
    request: Request, _token: Annotated[TokenRecord | None, Depends(require(Role.VIEWER))]
) -> Response:
    gateway = services_of(request).gateway
    items = [describe(gateway, live) for _, live in sorted(gateway.experiments.items())]
    return json_response({"experiments": items})


@router.get("/v1/experiments/{key}", summary="One live experiment, with its spec")
async def get_experiment(
    key: str,
    request: Request,
    _token: Annotated[TokenRecord | None, Depends(require(Role.VIEWER))],
) -> Response:
    gateway = services_of(request).gateway
    return json_response(describe(gateway, gateway.get(key), with_spec=True))


@router.post(
    "/v1/experiments",
    summary="Validate, register and start serving an experiment spec",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpec"}}
            },
        }
    },
)
async def register_experiment(
    request: Request,
    token: Annotated[TokenRecord | None, Depends(require(Role.EXPERIMENTER))],
    shadow: Annotated[list[str] | None, Query(description="challengers to mirror")] = None,
    default: Annotated[bool, Query(description="make it the default experiment")] = False,
) -> Response:
    """Every problem in the spec is reported at once (422, ``problems``). Registering an
    existing key replaces it; a change of weights, coverage or variants opens a new phase.
    A model the caller may not name (see :mod:`abflow.serving.model_policy`) is a 403,
    before anything is loaded: the API never runs code the operator did not configure.
    Each remote model server the spec brings in is sent one probe row first; a server that
    refuses it makes a 422 naming the variant and quoting the server's answer."""
    services = services_of(request)
    body = await read_body(request, services.settings.max_body_bytes)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidSpecError([f".: not valid JSON: {exc}"], "body") from None
    spec: ExperimentSpec = parse_experiment(data, "body")
    check_spec(spec, policy_for(services.settings, services.config))
    undefined = sorted(saved_group_ids(spec.condition) - services.config.saved_groups.keys())
    if undefined:
        problem = (
            f"condition: saved group {undefined[0]!r} is not defined in the gateway config's "
            "saved_groups (it would match nobody)"
        )
        raise InvalidSpecError([problem], "body")
    check = services.remote_health.registration_check(
        spec, services.config.backends, asyncio.get_running_loop()
    )
    live = await asyncio.to_thread(
        services.gateway.add_experiment,
        spec,
        shadow=tuple(shadow or ()),
        default=default,
        actor=f"token:{token.name}" if token is not None else "anonymous",
        check=check,
    )
    return json_response(describe(services.gateway, live, with_spec=True), status=201)
