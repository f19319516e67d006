"""Bearer tokens: creation, hashing, verification and authorisation.

A token is 32 random bytes (URL-safe base64, prefixed ``abf_`` so that secret scanners can
spot a leaked one). Only its SHA-256 is stored: a high-entropy secret needs no slow password
hash, and a database leak then reveals nothing usable. Lookups go by hash, and the stored
hash is compared once more in constant time. Verified tokens are remembered for a few
seconds so the prediction hot path does not query the store on every request; that bounds
how long a revoked token keeps working (``cache_ttl_seconds``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from abflow.errors import AuthenticationError, PermissionDeniedError
from abflow.security.roles import Role, parse_role, role_allows

__all__ = [
    "TOKEN_PREFIX",
    "InMemoryTokenStore",
    "TokenAuthenticator",
    "TokenRecord",
    "TokenStore",
    "create_token",
    "generate_token",
    "hash_token",
]

TOKEN_PREFIX = "abf_"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What is stored about a token: never the token itself."""

    token_id: str
    name: str
    role: Role
    token_hash: str
    created_at: float
    revoked_at: float | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class TokenStore(Protocol):
    """Where token records live (the event store in production, memory in tests)."""

    def insert_token(self, record: TokenRecord) -> None: ...

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    def revoke_token(self, token_id: str) -> None: ...

    def has_tokens(self) -> bool: ...


class InMemoryTokenStore:
    """A :class:`TokenStore` in a dict: for tests and for tokens given in a config file."""

    def __init__(self, records: list[TokenRecord] | None = None) -> None:
        self._by_hash: dict[str, TokenRecord] = {}
        self._lock = threading.Lock()
        for record in records or []:
            self.insert_token(record)

    def insert_token(self, record: TokenRecord) -> None:
        with self._lock:
            self._by_hash[record.token_hash] = record

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        return self._by_hash.get(token_hash)

    def revoke_token(self, token_id: str) -> None:
        with self._lock:
            for token_hash, record in list(self._by_hash.items()):
                if record.token_id == token_id:
                    revoked = TokenRecord(
                        record.token_id,
                        record.name,
                        record.role,
                        record.token_hash,
                        record.created_at,
                        time.time(),
                    )
                    self._by_hash[token_hash] = revoked

    def has_tokens(self) -> bool:
        return any(not r.is_revoked for r in self._by_hash.values())


def generate_token() -> str:
    """A fresh random token (256 bits of entropy)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token: the only form that is ever stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: TokenStore, name: str, role: Role | str) -> tuple[str, TokenRecord]:
    """Create and store a token; return the plaintext (show it once) and its record."""
    record_role = role if isinstance(role, Role) else parse_role(role)
    token = generate_token()
    record = TokenRecord(
        token_id=uuid.uuid4().hex,
        name=name,
        role=record_role,
        token_hash=hash_token(token),
        created_at=time.time(),
    )
    store.insert_token(record)
    return token, record


class TokenAuthenticator:
    """Turns an ``Authorization`` header into a :class:`TokenRecord`, or raises 401/403 errors."""

    def __init__(
        self,
        store: TokenStore,
        *,
        cache_ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[TokenRecord, float]] = {}

    def authenticate(self, authorization: str | None) -> TokenRecord:
        """The record of the bearer token in ``authorization``; AuthenticationError otherwise."""
        if not authorization:
            msg = "missing bearer token: send 'Authorization: Bearer <token>'"
            raise AuthenticationError(msg)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            msg = "malformed Authorization header: expected 'Bearer <token>'"
            raise AuthenticationError(msg)
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        digest = hash_token(token)
        record = self._store.find_token_by_hash(digest)
        if (
            record is None
            or not hmac.compare_digest(record.token_hash, digest)
            or record.is_revoked
        ):
            self._cache.pop(token, None)
            msg = "invalid or revoked token"
            raise AuthenticationError(msg)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (record, now + self._ttl)
        return record

    def authorize(self, authorization: str | None, required: Role) -> TokenRecord:
        """Authenticate, then check the role: PermissionDeniedError when it does not allow it."""
        record = self.authenticate(authorization)
        if not role_allows(record.role, required):
            msg = f"token {record.name!r} has role {record.role.value!r}; this needs {required.value!r}"
            raise PermissionDeniedError(msg)
        return record
