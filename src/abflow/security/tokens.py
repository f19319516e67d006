"""Bearer tokens: creation, hashing, verification and authorisation.

A token is 32 random bytes (URL-safe base64, prefixed ``abf_`` so that secret scanners can
spot a leaked one). Only its SHA-256 is stored: a high-entropy secret needs no slow password
hash, and a database leak then reveals nothing usable. Lookups go by hash, and the stored
hash is compared once more in constant time.

Fail safe: the gateway's requests never wait on the store for long, and never on the event
loop. Verified tokens are kept in memory (by hash). A token verified less than
``cache_ttl_seconds`` ago is admitted from memory. An older one is re-verified on a look-up
thread; the request waits for that at most ``lookup_timeout_seconds``, and if the store
fails or does not answer in time it is admitted from memory (last known good). While the
store is known to be unreachable, known tokens are admitted from memory at once, a token
never seen gets StoreUnavailableError (HTTP 503) at once, and one probe a second finds out
when the store is back. A hung store holds at most the look-up threads, never a request
for longer than ``lookup_timeout_seconds``.

How long a revocation takes to bite: with the store reachable, a revoked token stops
working ``cache_ttl_seconds`` after it was last verified. While the store is unreachable the
revocation cannot be read, so a token verified before the outage keeps working, but for at
most ``max_stale_seconds`` after it was last verified (default one hour): a long outage
must not turn a revoked token back into a valid one indefinitely. After that the token gets
StoreUnavailableError (HTTP 503) until the store answers; the first look-up after the
outage reads the revocation and the next request is refused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from abflow.errors import (
    AuthenticationError,
    PermissionDeniedError,
    StoreError,
    StoreUnavailableError,
)
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
PROBE_INTERVAL_SECONDS = 1.0
"""While the store is unreachable, at most one look-up a second goes to it."""
LOOKUP_THREADS = 4
"""Threads for token look-ups: a hung store can hold only these, never the event loop."""
MAX_CACHED_TOKENS = 10_000

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class _Verified:
    record: TokenRecord
    verified_at: float


class TokenAuthenticator:
    """Turns an ``Authorization`` header into a :class:`TokenRecord`, or raises 401/403 errors.

    ``authorize_async`` is the gateway's (it never blocks the event loop: see the module
    docstring); ``authorize`` is the blocking form for scripts and the CLI.
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        cache_ttl_seconds: float = 5.0,
        lookup_timeout_seconds: float = 2.0,
        max_stale_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_ttl_seconds
        self._max_stale = max_stale_seconds
        self._lookup_timeout = lookup_timeout_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Verified] = {}
        self._in_flight: dict[str, concurrent.futures.Future[TokenRecord | None]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._unreachable_since: float | None = None
        self._next_probe_at = 0.0
        self.lookups = 0
        """Look-ups sent to the store (for tests and metrics)."""

    @property
    def store_unreachable_since(self) -> float | None:
        """Wall-clock time of the first failed look-up of the current outage, else None."""
        return self._unreachable_since

    # -- blocking form -----------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> TokenRecord:
        """The record of the bearer token in ``authorization``; AuthenticationError otherwise.

        Blocks on the store for a token not verified within the TTL; when the store is
        unreachable, a token verified before is still admitted.
        """
        digest = _digest_of(authorization)
        known = self._cache.get(digest)
        if known is not None and self._clock() - known.verified_at < self._ttl:
            return known.record
        try:
            record = self._verify(digest)
        except StoreUnavailableError:
            if known is None:
                raise
            return self._from_memory(known)
        return _admit(record)

    def authorize(self, authorization: str | None, required: Role) -> TokenRecord:
        """Authenticate, then check the role: PermissionDeniedError when it does not allow it."""
        return _check_role(self.authenticate(authorization), required)

    # -- the gateway's form ------------------------------------------------------------------

    async def authenticate_async(self, authorization: str | None) -> TokenRecord:
        """Like :meth:`authenticate`, without ever blocking the event loop on the store."""
        digest = _digest_of(authorization)
        known = self._cache.get(digest)
        if known is not None and self._clock() - known.verified_at < self._ttl:
            return known.record
        if self._unreachable_since is not None:
            # Known tokens never wait during an outage; new ones wait only for a due probe.
            lookup = self._start_lookup(digest)
            if known is not None:
                return self._from_memory(known)
            if lookup is None:
                raise _unreachable_error(self._unreachable_since)
        else:
            lookup = self._start_lookup(digest)
        if lookup is None:  # an outage was noted meanwhile
            if known is None:
                raise _unreachable_error(self._unreachable_since or time.time())
            return self._from_memory(known)
        waiting = asyncio.wrap_future(lookup)
        waiting.add_done_callback(_consume)  # an abandoned look-up's error is not "unretrieved"
        try:
            async with asyncio.timeout(self._lookup_timeout):
                record = await asyncio.shield(waiting)
        except TimeoutError:
            self._note_outage()
            if known is not None:
                return self._from_memory(known)
            msg = (
                f"cannot verify this token: the store did not answer within "
                f"{self._lookup_timeout:g} s (tokens verified before still work)"
            )
            raise StoreUnavailableError(msg) from None
        except StoreUnavailableError:
            if known is not None:
                return self._from_memory(known)
            raise
        return _admit(record)

    async def authorize_async(self, authorization: str | None, required: Role) -> TokenRecord:
        """:meth:`authenticate_async`, then the role check."""
        return _check_role(await self.authenticate_async(authorization), required)

    def _from_memory(self, known: _Verified) -> TokenRecord:
        """The token as last verified, while the store cannot say otherwise: refused once
        that was more than ``max_stale_seconds`` ago (its revocation may be unread)."""
        age = self._clock() - known.verified_at
        if age <= self._max_stale:
            return known.record
        msg = (
            f"cannot verify this token: the store is unreachable and the token was last "
            f"verified {age:.0f} s ago, more than the {self._max_stale:g} s a token is trusted "
            "from memory"
        )
        raise StoreUnavailableError(msg)

    def close(self) -> None:
        """Stop the look-up threads (a look-up still waiting on the store is abandoned)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- internals ---------------------------------------------------------------------------

    def _start_lookup(self, digest: str) -> concurrent.futures.Future[TokenRecord | None] | None:
        """The look-up of ``digest`` in flight, or a new one; None while probes are paused."""
        with self._lock:
            running = self._in_flight.get(digest)
            if running is not None:
                return running
            if self._unreachable_since is not None:
                if self._clock() < self._next_probe_at:
                    return None
                self._next_probe_at = self._clock() + PROBE_INTERVAL_SECONDS
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    LOOKUP_THREADS, thread_name_prefix="abflow-token-lookup"
                )
            lookup = self._executor.submit(self._verify_quietly, digest)
            self._in_flight[digest] = lookup
        lookup.add_done_callback(lambda _done: self._in_flight.pop(digest, None))
        return lookup

    def _verify_quietly(self, digest: str) -> TokenRecord | None:
        """:meth:`_verify` on a look-up thread: an outage is already noted, so log it once."""
        try:
            return self._verify(digest)
        except StoreUnavailableError as exc:
            logger.debug("token look-up failed: %s", exc)
            raise

    def _verify(self, digest: str) -> TokenRecord | None:
        """Look ``digest`` up in the store and update memory; the record if valid, else None."""
        with self._lock:
            self.lookups += 1
        try:
            record = self._store.find_token_by_hash(digest)
        except StoreUnavailableError:
            self._note_outage()
            raise
        except StoreError as exc:  # e.g. a broken schema: not an outage, and not a 500 here
            self._note_outage()
            msg = f"cannot verify this token: {exc}"
            raise StoreUnavailableError(msg) from exc
        self._note_recovery()
        valid = (
            record is not None
            and hmac.compare_digest(record.token_hash, digest)
            and not record.is_revoked
        )
        with self._lock:
            if record is None or not valid:
                self._cache.pop(digest, None)
                return None
            if len(self._cache) >= MAX_CACHED_TOKENS and digest not in self._cache:
                self._cache.clear()
            self._cache[digest] = _Verified(record, self._clock())
        return record

    def _note_outage(self) -> None:
        with self._lock:
            if self._unreachable_since is None:
                self._unreachable_since = time.time()
                logger.warning("token store unreachable: admitting known tokens from memory")
            self._next_probe_at = self._clock() + PROBE_INTERVAL_SECONDS

    def _note_recovery(self) -> None:
        with self._lock:
            if self._unreachable_since is not None:
                logger.warning("token store reachable again")
            self._unreachable_since = None


def _digest_of(authorization: str | None) -> str:
    """The hash of the bearer token in an ``Authorization`` header (401 when there is none)."""
    if not authorization:
        msg = "missing bearer token: send 'Authorization: Bearer <token>'"
        raise AuthenticationError(msg)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        msg = "malformed Authorization header: expected 'Bearer <token>'"
        raise AuthenticationError(msg)
    return hash_token(token)


def _consume(future: asyncio.Future[TokenRecord | None]) -> None:
    if not future.cancelled():
        future.exception()


def _admit(record: TokenRecord | None) -> TokenRecord:
    if record is None:
        msg = "invalid or revoked token"
        raise AuthenticationError(msg)
    return record


def _check_role(record: TokenRecord, required: Role) -> TokenRecord:
    if not role_allows(record.role, required):
        msg = f"token {record.name!r} has role {record.role.value!r}; this needs {required.value!r}"
        raise PermissionDeniedError(msg)
    return record


def _unreachable_error(since: float) -> StoreUnavailableError:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    msg = (
        f"cannot verify this token: the store has been unreachable since {when} "
        "(tokens verified before still work)"
    )
    return StoreUnavailableError(msg)
