"""Roles of API tokens and what each may do.

Two families: a *service* token is what a calling application holds (predict and report
outcomes); *viewer* < *experimenter* < *admin* are for people and automation that read or
change experiments. Admin may do everything, including predict, so that one operator token
is enough to try the gateway by hand.
"""

from __future__ import annotations

from enum import StrEnum

from abflow.errors import InvalidArgumentError

__all__ = ["Role", "parse_role", "role_allows"]


class Role(StrEnum):
    """A token's role; the value is what is stored and typed on the command line."""

    SERVICE = "service"
    VIEWER = "viewer"
    EXPERIMENTER = "experimenter"
    ADMIN = "admin"


_GRANTS: dict[Role, frozenset[Role]] = {
    Role.SERVICE: frozenset({Role.SERVICE}),
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.EXPERIMENTER: frozenset({Role.VIEWER, Role.EXPERIMENTER}),
    Role.ADMIN: frozenset(Role),
}


def role_allows(held: Role, required: Role) -> bool:
    """Whether a token holding ``held`` may call an endpoint that requires ``required``."""
    return required in _GRANTS[held]


def parse_role(value: str) -> Role:
    """The :class:`Role` named ``value`` (case-insensitive), or a clear error listing them all."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in Role)
        msg = f"unknown role {value!r}; roles are {names}"
        raise InvalidArgumentError(msg) from None
