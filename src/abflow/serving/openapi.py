"""The OpenAPI document (``/openapi.json``, ``/docs``): schemas, bearer auth, and errors.

Bodies of the hot routes are parsed from raw bytes rather than by FastAPI, so their
schemas are added here as components, with the bearer scheme that ``/docs`` uses for its
"Authorize" button.

The refusals an operation can answer are not written on each route: they follow from what
the operation needs (a token, a body, parameters, an experiment named by the caller, a
model, the event log, the store), through the one table :data:`ERRORS`. What is visible in
the route (security, body, parameters) is read from the document itself; what happens
inside the handler is declared once per operation in :data:`USES`. Every refusal carries
the error body of :mod:`abflow.serving.http_errors`, its ``error`` narrowed to the kinds
that status can have. Handlers answer with plain dicts (no response models, for speed), so
the success bodies' schemas are declared here too, where a route leaves them empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from abflow.serving.http_errors import ERROR_SCHEMA, error_kinds
from abflow.serving.inputs import OutcomesIn, PredictIn
from abflow.spec import ExperimentSpec

__all__ = ["ERRORS", "USES", "Need", "install_openapi", "needs_of"]

_BODY_MODELS: tuple[type[BaseModel], ...] = (PredictIn, OutcomesIn, ExperimentSpec)
_PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
# Paths that a setting can make public: path -> name of the GatewaySettings flag.
_PUBLIC_WHEN = {"/metrics": "metrics_public"}
_SCHEMAS = "#/components/schemas/"
_FRAMEWORK_422 = ("HTTPValidationError", "ValidationError")
_FASTAPI_422 = "Validation Error"


class Need(StrEnum):
    """Something an operation depends on that can make it refuse a request."""

    TOKEN = "token"
    BODY = "body"
    PARAMETERS = "parameters"
    EXPERIMENT = "experiment"
    MODEL = "model"
    MODEL_LOADING = "model_loading"
    EVENT_LOG = "event_log"
    STORE = "store"
    READINESS = "readiness"


@dataclass(frozen=True)
class Refusal:
    """A status an operation may answer because of a need, and why."""

    status: int
    reason: str


ERRORS: dict[Need, tuple[Refusal, ...]] = {
    Need.TOKEN: (
        Refusal(401, "no bearer token, or an unknown or revoked one"),
        Refusal(403, "the token's role does not allow this operation"),
        Refusal(503, "the token store cannot be reached to verify a token not verified before"),
    ),
    Need.BODY: (
        Refusal(413, "the body is over the gateway's size limit"),
        Refusal(422, "the body is not valid; the detail names the field"),
    ),
    Need.PARAMETERS: (Refusal(422, "a parameter is not valid; the detail names it"),),
    Need.EXPERIMENT: (Refusal(404, "no such experiment"),),
    Need.MODEL: (
        Refusal(502, "the model failed (after falling back to the control model)"),
        Refusal(503, "the model's circuit is open"),
        Refusal(504, "the model did not answer in time"),
    ),
    Need.MODEL_LOADING: (
        Refusal(403, "a model reference the API may not register (code, or a host not allowed)"),
        Refusal(422, "a model reference cannot be loaded or fails its checksum"),
        Refusal(503, "the model registry cannot be reached"),
    ),
    Need.EVENT_LOG: (
        Refusal(500, "the local event journal cannot be written (disk full): nothing was kept"),
        Refusal(503, "the event log cannot keep the events (nothing was logged)"),
    ),
    Need.STORE: (Refusal(503, "the store cannot be reached"),),
    Need.READINESS: (Refusal(503, "starting or draining: send traffic elsewhere"),),
}
"""Every status a need can cause. A new kind of refusal gets its entry here, nowhere else."""
_TABLE_STATUSES = frozenset(refusal.status for refusals in ERRORS.values() for refusal in refusals)

USES: dict[tuple[str, str], frozenset[Need]] = {
    ("POST", "/v1/predict"): frozenset({Need.MODEL, Need.EVENT_LOG}),
    ("POST", "/v1/outcomes"): frozenset({Need.EVENT_LOG}),
    ("POST", "/v1/experiments"): frozenset({Need.MODEL_LOADING, Need.STORE}),
    ("GET", "/v1/experiments/{key}/results"): frozenset({Need.STORE}),
    ("GET", "/readyz"): frozenset({Need.READINESS}),
}
"""What an operation's handler uses that its signature does not show."""

_READINESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["starting", "draining"]},
        "problems": {"type": "array", "items": {"type": "string"}},
    },
}
_TEXT: dict[str, Any] = {"type": "string"}
_INTEGER: dict[str, Any] = {"type": "integer", "minimum": 0}
_VARIANT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "model", "model_version", "weight", "is_shadow", "circuit"],
    "properties": {
        "name": _TEXT,
        "model": _TEXT,
        "model_version": {"type": ["string", "null"]},
        "checksum": {"type": ["string", "null"]},
        "weight": {"type": "number"},
        "is_shadow": {"type": "boolean"},
        "circuit": _TEXT,
    },
}
_SUCCESS_SCHEMAS: dict[str, dict[str, Any]] = {
    "Prediction": {
        "type": "object",
        "required": [
            "request_id",
            "experiment",
            "variant",
            "in_experiment",
            "reason",
            "model_version",
            "is_fallback",
            "prediction",
        ],
        "properties": {
            "request_id": _TEXT,
            "experiment": _TEXT,
            "variant": {"type": ["string", "null"], "description": "null outside the experiment"},
            "in_experiment": {"type": "boolean"},
            "reason": _TEXT,
            "model_version": _TEXT,
            "is_fallback": {"type": "boolean"},
            "prediction": {"description": "one output for one row, else a list of outputs"},
        },
    },
    "OutcomesAccepted": {
        "type": "object",
        "required": ["accepted", "event_ids"],
        "properties": {"accepted": _INTEGER, "event_ids": {"type": "array", "items": _TEXT}},
    },
    "Experiment": {
        "type": "object",
        "required": [
            "key",
            "unit",
            "version",
            "phase",
            "coverage",
            "active",
            "is_default",
            "variants",
        ],
        "properties": {
            "key": _TEXT,
            "name": _TEXT,
            "unit": _TEXT,
            "version": _INTEGER,
            "phase": _INTEGER,
            "coverage": {"type": "number"},
            "active": {"type": "boolean", "description": "false: paused, only forced units are in"},
            "is_default": {"type": "boolean"},
            "variants": {"type": "array", "items": _VARIANT},
            "spec": {"$ref": _SCHEMAS + "ExperimentSpec"},
        },
    },
    "ExperimentList": {
        "type": "object",
        "required": ["experiments"],
        "properties": {
            "experiments": {"type": "array", "items": {"$ref": _SCHEMAS + "Experiment"}}
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": _TEXT}},
}
"""Schemas of the success bodies, which handlers build as plain dicts (no response models)."""

_JSON = "application/json"
# Success body of each operation whose route declares none: status, media type, schema.
_SUCCESS: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {
    ("POST", "/v1/predict"): ("200", _JSON, {"$ref": _SCHEMAS + "Prediction"}),
    ("POST", "/v1/outcomes"): ("202", _JSON, {"$ref": _SCHEMAS + "OutcomesAccepted"}),
    ("GET", "/v1/experiments"): ("200", _JSON, {"$ref": _SCHEMAS + "ExperimentList"}),
    ("POST", "/v1/experiments"): ("201", _JSON, {"$ref": _SCHEMAS + "Experiment"}),
    ("GET", "/v1/experiments/{key}"): ("200", _JSON, {"$ref": _SCHEMAS + "Experiment"}),
    ("GET", "/healthz"): ("200", _JSON, {"$ref": _SCHEMAS + "Health"}),
    ("GET", "/readyz"): ("200", _JSON, {"$ref": _SCHEMAS + "Health"}),
    ("GET", "/metrics"): ("200", "text/plain", {"type": "string"}),
}
_SUCCESS_HEADERS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/predict"): {
        "X-Request-ID": {
            "description": "the request id (the caller's x-request-id when it fits)",
            "required": True,
            "schema": _TEXT,
        }
    },
}
_UNAUTHENTICATED_HEADERS = {
    "WWW-Authenticate": {
        "description": "always Bearer",
        "required": True,
        "schema": {"type": "string", "enum": ["Bearer"]},
    }
}


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the body schemas, bearer security and every refusal."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in _BODY_MODELS:
            schema = model.model_json_schema(ref_template=_SCHEMAS + "{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        for name in _FRAMEWORK_422:  # replaced by the gateway's own error body
            schemas.pop(name, None)
        schemas["Error"] = ERROR_SCHEMA
        schemas.update(_SUCCESS_SCHEMAS)
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "abflow API token"}
        }
        settings = getattr(getattr(app.state, "abflow", None), "settings", None)
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if _needs_token(path, settings):
                    operation["security"] = [{"bearer": []}]
                needs = needs_of(method, path, operation, schemas)
                operation["responses"] = _responses(operation.get("responses", {}), needs)
                _declare_success(method.upper(), path, operation["responses"])
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]


def _needs_token(path: str, settings: Any) -> bool:
    if path in _PUBLIC_PATHS:
        return False
    if settings is None:
        return True
    flag = _PUBLIC_WHEN.get(path)
    return bool(settings.auth_enabled) and not (flag and getattr(settings, flag))


def needs_of(
    method: str, path: str, operation: dict[str, Any], schemas: dict[str, Any]
) -> frozenset[Need]:
    """What an operation of the document depends on: read from it, plus :data:`USES`."""
    needs = set(USES.get((method.upper(), path), ()))
    if operation.get("security"):
        needs.add(Need.TOKEN)
    parameters = operation.get("parameters", [])
    if any(_can_refuse(parameter.get("schema", {})) for parameter in parameters):
        needs.add(Need.PARAMETERS)
    body = _body_schema(operation, schemas)
    if body is not None:
        needs.add(Need.BODY)
    names_experiment = any(
        parameter.get("in") == "path" and parameter.get("name") == "key" for parameter in parameters
    )
    if names_experiment or "experiment" in (body or {}).get("properties", {}):
        needs.add(Need.EXPERIMENT)
    return frozenset(needs)


def _body_schema(operation: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None
    ref = schema.get("$ref", "")
    if isinstance(ref, str) and ref.startswith(_SCHEMAS):
        resolved: dict[str, Any] = schemas.get(ref.removeprefix(_SCHEMAS), {})
        return resolved
    return dict(schema)


def _can_refuse(schema: dict[str, Any]) -> bool:
    """Whether a parameter value can fail validation (any text passes a bare string)."""
    options = schema.get("anyOf", [schema])
    for option in options:
        kind = option.get("type")
        if kind == "null":
            continue
        if kind == "array":
            option = option.get("items", {})
            kind = option.get("type")
        constrained = {"enum", "pattern", "minLength", "maxLength", "format"} & set(option)
        if kind != "string" or constrained:
            return True
    return False


def _responses(declared: dict[str, Any], needs: frozenset[Need]) -> dict[str, Any]:
    """The operation's success responses as declared, then one entry per refusal: those the
    needs bring, and any status the table does not know that the route declares itself
    (a route's own 401 or 422, like FastAPI's automatic one, stays only where a need
    brings it)."""
    responses = {code: value for code, value in declared.items() if not _is_refusal(code)}
    reasons: dict[int, list[str]] = {}
    for need in sorted(needs):
        for refusal in ERRORS[need]:
            reasons.setdefault(refusal.status, []).append(refusal.reason)
    for code in declared:
        if _is_refusal(code) and int(code) not in _TABLE_STATUSES:
            reasons.setdefault(int(code), [])
    for status in sorted(reasons):
        given = declared.get(str(status), {}).get("description")
        generic = given in (None, "", _FASTAPI_422)
        response: dict[str, Any] = {
            "description": "; ".join(reasons[status]) if generic else given,
            "content": {"application/json": {"schema": _refusal_schema(status, needs)}},
        }
        if status == 401:
            response["headers"] = _UNAUTHENTICATED_HEADERS
        responses[str(status)] = response
    return responses


def _declare_success(method: str, path: str, responses: dict[str, Any]) -> None:
    """Fill in the success body's schema where the route left FastAPI's empty one."""
    success = _SUCCESS.get((method, path))
    if success is None:
        return
    status, media_type, schema = success
    content = responses.setdefault(status, {"description": "OK"}).setdefault("content", {})
    media = content.setdefault(media_type, {})
    if not media.get("schema"):
        media["schema"] = schema
    headers = _SUCCESS_HEADERS.get((method, path))
    if headers:
        responses[status].setdefault("headers", {}).update(headers)


def _is_refusal(code: str) -> bool:
    return code.isdigit() and int(code) >= 400


def _refusal_schema(status: int, needs: frozenset[Need]) -> dict[str, Any]:
    if Need.READINESS in needs and status == 503:
        return _READINESS_SCHEMA
    kinds = error_kinds(status)
    if not kinds:  # a status no table entry gives: any kind
        return {"$ref": _SCHEMAS + "Error"}
    narrowed = {"error": {"type": "string", "enum": list(kinds)}}
    return {"allOf": [{"$ref": _SCHEMAS + "Error"}], "properties": narrowed}
