"""The HTTP gateway: app factory, routers, model backends, batching, cache and shadow traffic.

Events go to :mod:`abflow.events` (the durable pipeline). ``create_app`` and
``GatewaySettings`` are loaded on first use, so that importing a light submodule
(``abflow.serving.backends``) does not pull in FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["GatewayConfig", "GatewaySettings", "create_app"]

_LAZY = {
    "GatewayConfig": "abflow.serving.settings",
    "GatewaySettings": "abflow.serving.settings",
    "create_app": "abflow.serving.app",
}

if TYPE_CHECKING:
    from abflow.serving.app import create_app
    from abflow.serving.settings import GatewayConfig, GatewaySettings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'abflow.serving' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)
