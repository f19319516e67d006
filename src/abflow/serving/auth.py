"""Bearer-token checks as FastAPI dependencies: ``Depends(require(Role.VIEWER))``.

Dependencies are ``async`` so that FastAPI calls them on the event loop instead of a
thread pool: the check is a dict lookup for any token seen before, and a token never seen
waits for the store on a look-up thread, never on the loop (see
:mod:`abflow.security.tokens` for what happens while the store is unreachable). Tests
replace them with ``app.dependency_overrides[require(Role.VIEWER)]``: each role has one
dependency object.
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
        authorization = request.headers.get("authorization")
        return await services.authenticator.authorize_async(authorization, role)

    dependency.__name__ = f"require_{role.value}"
    return dependency
