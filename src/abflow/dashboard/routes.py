"""``/ui``: one static page that reads the gateway's own JSON API with a viewer token.

The page holds no data and no secret: it asks for a token, keeps it in the tab's
``sessionStorage`` and sends it as a bearer header to ``/v1/experiments`` and
``/v1/experiments/{key}/results``, which enforce the viewer role. The assets are served with
a strict Content-Security-Policy (same-origin scripts only, no inline code), so a spec or
metric name can never run as script in the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response

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
