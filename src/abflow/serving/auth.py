"""Bearer-token checks as FastAPI dependencies: ``Depends(require(Role.VIEWER))``.

Dependencies are ``async`` so that FastAPI calls them on the event loop instead of a
thread pool: the check is a dict lookup in the common (cached) case. Tests replace them
with ``app.dependency_overrides[require(Role.VIEWER)]``: each role has one dependency object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache

from fastapi import Request

from abflow.security.roles import Role
from abflow.security.tokens import TokenRecord
from abflow.serving.services import services_of

__all__ = ["require"]

Dependency = Callable[[Request], Awaitable[TokenRecord | None]]


@cache
def require(role: Role) -> Dependency:
    """The dependency that admits tokens whose role allows ``role`` (401/403 otherwise).

    Returns None when authentication is disabled (``ABFLOW_AUTH_ENABLED=false``).
    """

    async def dependency(request: Request) -> TokenRecord | None:
        services = services_of(request)
        if not services.settings.auth_enabled:
            return None
        return services.authenticator.authorize(request.headers.get("authorization"), role)

    dependency.__name__ = f"require_{role.value}"
    return dependency
