"""API token records in the ``api_tokens`` table: the store's side of the gateway's auth.

Only a token's hash is ever stored (the caller hashes; see :mod:`abflow.security.tokens`).
Revoking keeps the row with ``revoked_at`` set, so a lookup can tell "revoked" from "never
existed" and the history of who held access stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from abflow.errors import StoreError
from abflow.store.schema import api_tokens

__all__ = ["StoredToken", "find_by_hash", "has_active", "insert", "list_all", "revoke"]


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A token row: its id, owner name, role name and hash; never the token itself."""

    token_id: str
    name: str
    role: str
    token_hash: str
    created_at: float
    revoked_at: float | None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def insert(
    connection: Connection, token_id: str, name: str, role: str, token_hash: str, now: float
) -> StoredToken:
    """Store a new token record; StoreError when its id or hash is already stored."""
    taken = connection.execute(
        sa.select(api_tokens.c.token_id).where(
            sa.or_(api_tokens.c.token_id == token_id, api_tokens.c.token_hash == token_hash)
        )
    ).first()
    if taken is not None:
        msg = f"cannot store token {token_id!r}: a token with this id or hash already exists"
        raise StoreError(msg)
    connection.execute(
        api_tokens.insert().values(
            token_id=token_id, name=name, role=role, token_hash=token_hash, created_at=now
        )
    )
    return StoredToken(token_id, name, role, token_hash, now, None)


def find_by_hash(connection: Connection, token_hash: str) -> StoredToken | None:
    """The record with this hash, revoked or not; None if there is none."""
    row = connection.execute(
        sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash)
    ).one_or_none()
    return None if row is None else _from_row(row)


def revoke(connection: Connection, token_id: str, now: float) -> bool:
    """Mark a token revoked; False when no active token has this id."""
    result = connection.execute(
        api_tokens.update()
        .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)


def has_active(connection: Connection) -> bool:
    """Whether any token that is not revoked exists."""
    found = connection.execute(
        sa.select(api_tokens.c.token_id).where(api_tokens.c.revoked_at.is_(None)).limit(1)
    ).first()
    return found is not None


def list_all(connection: Connection) -> list[StoredToken]:
    """Every token record, oldest first."""
    rows = connection.execute(
        sa.select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.token_id)
    ).all()
    return [_from_row(row) for row in rows]


def _from_row(row: sa.Row[Any]) -> StoredToken:
    return StoredToken(
        token_id=row.token_id,
        name=row.name,
        role=row.role,
        token_hash=row.token_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
