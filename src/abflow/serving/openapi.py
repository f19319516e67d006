"""The OpenAPI document (``/openapi.json``, ``/docs``): request schemas and bearer auth.

Bodies of the hot routes are parsed from raw bytes rather than by FastAPI, so their
schemas are added here as components, with the bearer scheme that ``/docs`` uses for its
"Authorize" button.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from abflow.serving.inputs import OutcomesIn, PredictIn
from abflow.spec import ExperimentSpec

__all__ = ["install_openapi"]

_BODY_MODELS: tuple[type[BaseModel], ...] = (PredictIn, OutcomesIn, ExperimentSpec)
_PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the body schemas and the bearer security scheme."""

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
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "abflow API token"}
        }
        for path, operations in document.get("paths", {}).items():
            if path in _PUBLIC_PATHS:
                continue
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
