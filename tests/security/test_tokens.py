"""Tokens: stored hashed, compared by hash, cached briefly, checked against roles, and
admitted from memory while the store is down (never blocking the event loop)."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import pytest

from abflow.errors import (
    AuthenticationError,
    InvalidArgumentError,
    PermissionDeniedError,
    StoreUnavailableError,
)
from abflow.security.roles import Role, parse_role, role_allows
from abflow.security.tokens import (
    TOKEN_PREFIX,
    InMemoryTokenStore,
    TokenAuthenticator,
    TokenRecord,
    create_token,
    generate_token,
    hash_token,
)


def test_tokens_are_random_and_stored_only_as_sha256() -> None:
    store = InMemoryTokenStore()
    made = [create_token(store, f"t{i}", Role.SERVICE) for i in range(50)]
    plaintexts = {token for token, _ in made}
    assert len(plaintexts) == 50
    for token, record in made:
        assert token.startswith(TOKEN_PREFIX)
        assert len(token) - len(TOKEN_PREFIX) >= 43  # 32 bytes in URL-safe base64
        assert record.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr(record)
    assert hash_token(generate_token()) != hash_token(generate_token())


def test_role_matrix() -> None:
    allowed = {
        (held, required) for held in Role for required in Role if role_allows(held, required)
    }
    expected = {(r, r) for r in Role} | {
        (Role.EXPERIMENTER, Role.VIEWER),
        (Role.ADMIN, Role.SERVICE),
        (Role.ADMIN, Role.VIEWER),
        (Role.ADMIN, Role.EXPERIMENTER),
    }
    assert allowed == expected
    assert parse_role(" Admin ") is Role.ADMIN
    with pytest.raises(InvalidArgumentError, match="roles are service, viewer"):
        parse_role("root")


def test_authenticate_and_authorize() -> None:
    store = InMemoryTokenStore()
    token, record = create_token(store, "ci", "viewer")
    authenticator = TokenAuthenticator(store)
    assert authenticator.authenticate(f"Bearer {token}") == record
    assert authenticator.authenticate(f"bearer  {token} ") == record
    assert authenticator.authorize(f"Bearer {token}", Role.VIEWER) == record
    with pytest.raises(PermissionDeniedError, match="'ci' has role 'viewer'"):
        authenticator.authorize(f"Bearer {token}", Role.EXPERIMENTER)
    for header in (None, "", token, f"Basic {token}", "Bearer ", f"Bearer {token}x"):
        with pytest.raises(AuthenticationError):
            authenticator.authenticate(header)


def test_revocation_takes_effect_after_the_cache_ttl() -> None:
    now = [1000.0]
    store = InMemoryTokenStore()
    token, record = create_token(store, "svc", Role.SERVICE)
    authenticator = TokenAuthenticator(store, cache_ttl_seconds=5.0, clock=lambda: now[0])
    authenticator.authenticate(f"Bearer {token}")
    store.revoke_token(record.token_id)
    assert not store.has_tokens()
    now[0] += 4.9
    assert authenticator.authenticate(f"Bearer {token}").token_id == record.token_id
    now[0] += 0.2
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticator.authenticate(f"Bearer {token}")


class OutageStore(InMemoryTokenStore):
    """An in-memory store that can fail like a real one: refuse at once, or never answer."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "up"
        self.calls = 0
        self.release = threading.Event()

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        self.calls += 1
        if self.mode == "refuse":
            msg = "cannot look up a token: the store is unavailable (connection refused)"
            raise StoreUnavailableError(msg)
        if self.mode == "silent":
            self.release.wait(timeout=60)  # bounded: the test releases it
        return super().find_token_by_hash(token_hash)


def test_known_tokens_are_admitted_from_memory_while_the_store_refuses() -> None:
    now = [1000.0]
    store = OutageStore()
    token, record = create_token(store, "svc", Role.SERVICE)
    stranger, _ = create_token(store, "late", Role.SERVICE)
    authenticator = TokenAuthenticator(store, cache_ttl_seconds=5.0, clock=lambda: now[0])

    async def scenario() -> None:
        assert (await authenticator.authenticate_async(f"Bearer {token}")) == record
        store.mode = "refuse"
        now[0] += 60.0  # long past the TTL: every request would look the token up
        admitted = [await authenticator.authenticate_async(f"Bearer {token}") for _ in range(100)]
        assert all(r == record for r in admitted)
        assert authenticator.store_unreachable_since is not None
        with pytest.raises(StoreUnavailableError, match="unreachable since"):
            await authenticator.authenticate_async(f"Bearer {stranger}")
        # One probe when the outage was noticed, none more within the probe interval.
        assert store.calls == 2
        store.mode = "up"
        now[0] += 1.1
        assert (await authenticator.authenticate_async(f"Bearer {stranger}")).name == "late"
        assert authenticator.store_unreachable_since is None
        assert store.calls == 3

    asyncio.run(scenario())


def test_a_silent_store_holds_no_request_past_the_lookup_timeout() -> None:
    store = OutageStore()
    token, record = create_token(store, "svc", Role.SERVICE)
    stranger, _ = create_token(store, "late", Role.SERVICE)
    authenticator = TokenAuthenticator(
        store, cache_ttl_seconds=0.0, lookup_timeout_seconds=0.2, clock=lambda: 1000.0
    )  # a frozen clock: no second probe, however slow the machine
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        assert (await authenticator.authenticate_async(f"Bearer {token}")) == record
        store.mode = "silent"
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        # The re-verification hangs: the request waits 0.2 s, then is admitted from memory.
        assert (await authenticator.authenticate_async(f"Bearer {token}")) == record
        assert authenticator.store_unreachable_since is not None
        # From now on known tokens do not wait at all, and unknown ones are refused.
        for _ in range(50):
            assert (await authenticator.authenticate_async(f"Bearer {token}")) == record
        with pytest.raises(StoreUnavailableError):
            await authenticator.authenticate_async(f"Bearer {stranger}")
        stop.set()
        await ticking
        assert ticks >= 5  # the event loop kept running while the store was silent

    try:
        asyncio.run(scenario())
    finally:
        store.release.set()
        authenticator.close()
    assert store.calls == 1 + 1  # the first verification, and the one re-verification


def test_revocation_bites_after_the_ttl_and_after_an_outage() -> None:
    now = [1000.0]
    store = OutageStore()
    token, record = create_token(store, "svc", Role.SERVICE)
    authenticator = TokenAuthenticator(store, cache_ttl_seconds=5.0, clock=lambda: now[0])

    async def scenario() -> int:
        await authenticator.authenticate_async(f"Bearer {token}")
        store.revoke_token(record.token_id)
        now[0] += 4.9
        assert (await authenticator.authenticate_async(f"Bearer {token}")) == record
        now[0] += 0.2
        with pytest.raises(AuthenticationError, match="revoked"):
            await authenticator.authenticate_async(f"Bearer {token}")
        # A second token, revoked during an outage: admitted until the store answers again.
        other, other_record = create_token(store, "svc2", Role.SERVICE)
        await authenticator.authenticate_async(f"Bearer {other}")
        store.mode = "refuse"
        store.revoke_token(other_record.token_id)
        admitted = 0
        for _ in range(30):  # 30 s of outage, one request a second
            now[0] += 1.0
            admitted += (await authenticator.authenticate_async(f"Bearer {other}")) is not None
        store.mode = "up"
        now[0] += 1.0
        # The first request after the outage is admitted from memory and starts the probe
        # that reads the revocation; requests are refused as soon as it has answered.
        refusal = ""
        for _ in range(500):  # bounded: the probe runs on a look-up thread
            try:
                await authenticator.authenticate_async(f"Bearer {other}")
            except AuthenticationError as exc:
                refusal = str(exc)
                break
            admitted += 1
            await asyncio.sleep(0.01)
        assert "revoked" in refusal
        return admitted

    admitted = asyncio.run(scenario())
    assert 31 <= admitted <= 35  # 30 during the outage, then until the first probe answered


def test_an_outage_trusts_a_token_from_memory_only_for_max_stale_seconds() -> None:
    now = [1000.0]
    store = OutageStore()
    token, record = create_token(store, "svc", Role.SERVICE)
    authenticator = TokenAuthenticator(
        store, cache_ttl_seconds=5.0, max_stale_seconds=600.0, clock=lambda: now[0]
    )

    async def scenario() -> None:
        assert (await authenticator.authenticate_async(f"Bearer {token}")) == record  # t=0
        store.mode = "refuse"
        store.revoke_token(record.token_id)  # unreadable until the store is back
        now[0] += 599.0
        assert (await authenticator.authenticate_async(f"Bearer {token}")) == record
        now[0] += 2.0  # 601 s after the last verification
        with pytest.raises(StoreUnavailableError, match="last verified 601 s ago"):
            await authenticator.authenticate_async(f"Bearer {token}")
        # The blocking form (CLI, scripts) keeps the same bound.
        with pytest.raises(StoreUnavailableError, match="more than the 600 s"):
            authenticator.authenticate(f"Bearer {token}")
        store.mode = "up"
        now[0] += 2.0  # the next probe is due: it reads the revocation, and nothing passes
        refusal = ""
        for _ in range(500):  # bounded: the probe runs on a look-up thread
            try:
                await authenticator.authenticate_async(f"Bearer {token}")
            except AuthenticationError as exc:
                refusal = str(exc)
                break
            except StoreUnavailableError:
                await asyncio.sleep(0.01)
            else:
                pytest.fail("a token last verified 603 s ago passed during the outage")
        assert "revoked" in refusal

    try:
        asyncio.run(scenario())
    finally:
        authenticator.close()
