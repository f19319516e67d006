"""Everything one app holds, reached from a request as ``request.app.state.abflow``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from abflow.events.sink import EventSink
from abflow.monitoring.metrics import GatewayMetrics
from abflow.security.tokens import TokenAuthenticator, TokenStore
from abflow.serving.gateway import Gateway
from abflow.serving.remote_health import RemoteHealth
from abflow.serving.settings import GatewayConfig, GatewaySettings

__all__ = ["Services", "services_of"]


@dataclass(slots=True)
class Services:
    """The app's long-lived parts; built by create_app, started and stopped by its lifespan."""

    settings: GatewaySettings
    config: GatewayConfig
    gateway: Gateway
    events: EventSink
    tokens: TokenStore
    authenticator: TokenAuthenticator
    metrics: GatewayMetrics
    is_ready: bool = False
    is_draining: bool = False
    problems: list[str] = field(default_factory=list)
    startup_error: Exception | None = None
    """An abflow error that stopped startup: reported as one sentence, not a traceback."""
    remote_health: RemoteHealth = field(default_factory=RemoteHealth)
    """Which remote model servers fail now (``/readyz``), and the registration probe."""

    def degraded(self) -> list[str]:
        """What works less well than usual while predictions are still served (``/readyz``)."""
        found = []
        since = self.authenticator.store_unreachable_since
        if since is not None:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
            found.append(
                f"store unreachable since {when}: tokens seen before are admitted from "
                "memory, tokens never seen get 503"
            )
        if getattr(self.events, "is_store_reachable", True) is False:
            found.append(
                f"event store unreachable: events are kept in the local spool "
                f"({self.events.spool_bytes} bytes) and shipped when it is back"
            )
        return found


def services_of(request: Request) -> Services:
    """The :class:`Services` of the app serving ``request`` (a FastAPI dependency)."""
    services: Services = request.app.state.abflow
    return services
