"""The web dashboard served by the gateway under ``/ui`` (assets ship in the package, no CDN)."""

from __future__ import annotations

from abflow.dashboard.routes import STATIC_DIR, router

__all__ = ["STATIC_DIR", "router"]
