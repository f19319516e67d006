"""``GET /v1/experiments/{key}/results``: the analysis of an experiment, as JSON or a report.

The analysis reads the gateway's own store (aggregates are pushed down to SQL, so this is
cheap next to the raw event volume) and runs in a worker thread so predictions keep flowing.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from abflow.analysis import AnalysisOptions, analyze, render_html, render_markdown
from abflow.security.roles import Role
from abflow.security.tokens import TokenRecord
from abflow.serving.auth import require
from abflow.serving.inputs import MAX_TS
from abflow.serving.responses import json_response
from abflow.serving.services import services_of

__all__ = ["router"]

router = APIRouter(tags=["results"])


def _store_url(request: Request) -> str | None:
    services = services_of(request)
    url: str | None = getattr(services.settings, "store_url", None) or getattr(
        services.config, "store_url", None
    )
    return url


@router.get(
    "/v1/experiments/{key}/results",
    summary="Analyse an experiment: metrics, SRM, guardrails, progress and a verdict",
    responses={
        200: {
            "description": "The result (JSON schema_version 1, HTML or Markdown, by ``format``)",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/html": {"schema": {"type": "string"}},
                "text/markdown": {"schema": {"type": "string"}},
            },
        }
    },
)
async def get_results(
    key: str,
    request: Request,
    _token: Annotated[TokenRecord | None, Depends(require(Role.VIEWER))],
    phase: Annotated[int | None, Query(description="Phase to analyse; default: latest")] = None,
    output: Annotated[
        Literal["json", "html", "markdown"], Query(alias="format", description="Response format")
    ] = "json",
    by: Annotated[
        list[str] | None, Query(description="Exposure attributes to break results down by")
    ] = None,
    until: Annotated[
        float | None,
        Query(
            description="Count only events before this time (epoch seconds, years 1970-9999), "
            "e.g. the end of an audited decision's window",
            ge=0.0,
            lt=MAX_TS,
        ),
    ] = None,
) -> Response:
    from abflow.store.engine import display_url, resolve_url

    url = resolve_url(_store_url(request))
    options = AnalysisOptions(
        phase=phase, until=until, dimensions=tuple(by or ()), store_label=display_url(url)
    )
    result = await asyncio.to_thread(analyze, url, key, options)
    if output == "html":
        return HTMLResponse(render_html(result))
    if output == "markdown":
        return PlainTextResponse(render_markdown(result), media_type="text/markdown")
    return json_response(result.to_dict())
