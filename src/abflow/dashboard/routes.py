"""``/ui``: one static page, and the JSON views it reads with a viewer token.

The page holds no data and no secret: it asks for a token, keeps it in the tab's
``sessionStorage`` and sends it as a bearer header to ``/ui/api/…``, which admits the viewer
role exactly as ``/v1/experiments/{key}/results`` does (the gateway's authenticator, read
from the app, so ``ABFLOW_AUTH_ENABLED=false`` opens both alike). The views are finished text
and charts built by :mod:`abflow.dashboard.view`. The assets are served with a strict
Content-Security-Policy (same-origin scripts only, no inline code), so a spec or metric name
can never run as script in the page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, HTTPException, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from abflow.dashboard.view import experiment_list, experiment_view
from abflow.security.roles import Role
from abflow.security.tokens import TokenAuthenticator, TokenRecord
from abflow.store import EventStore
from abflow.store.engine import display_url, resolve_url

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).with_name("static")
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


class _Settings(Protocol):
    auth_enabled: bool


class _Services(Protocol):
    """What the dashboard reads of the gateway's services (``request.app.state.abflow``)."""

    settings: _Settings
    authenticator: TokenAuthenticator


async def _viewer(request: Request) -> TokenRecord | None:
    """Admit a viewer (or higher) token, as the gateway's own routes do; 401/403 otherwise."""
    services: _Services = request.app.state.abflow
    if not services.settings.auth_enabled:
        return None
    return await services.authenticator.authorize_async(
        request.headers.get("authorization"), Role.VIEWER
    )


def _store_url(request: Request) -> str:
    services = request.app.state.abflow
    url = getattr(services.settings, "store_url", None) or getattr(
        services.config, "store_url", None
    )
    return resolve_url(url)


def _served(request: Request) -> list[str]:
    gateway = getattr(request.app.state.abflow, "gateway", None)
    return sorted(getattr(gateway, "experiments", {}) or {})


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers=_HEADERS)


def _list(url: str, served: list[str]) -> list[dict[str, Any]]:
    with EventStore.open(url, must_exist=True) as store:
        return experiment_list(store, served)


def _detail(url: str, key: str) -> dict[str, Any]:
    with EventStore.open(url, must_exist=True) as store:
        return experiment_view(store, key, store_label=display_url(url))


@router.get("/ui/api/experiments")
async def ui_experiments(request: Request) -> Response:
    await _viewer(request)
    items = await asyncio.to_thread(_list, _store_url(request), _served(request))
    return _json({"experiments": items})


@router.get("/ui/api/experiments/{key}")
async def ui_experiment(key: str, request: Request) -> Response:
    await _viewer(request)
    return _json(await asyncio.to_thread(_detail, _store_url(request), key))


@router.get("/ui")
async def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def ui_index() -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/ui/{name}")
async def ui_asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no dashboard asset {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_HEADERS)
