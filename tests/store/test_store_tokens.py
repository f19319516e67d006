"""Token records in the store, alone and behind the gateway's authenticator."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from abflow.errors import AuthenticationError, StoreError
from abflow.security.roles import Role
from abflow.security.tokens import TokenAuthenticator, create_token, hash_token
from abflow.serving.wiring import StoreTokenStore
from abflow.store import EventStore


@pytest.fixture
def clocked(store_url: str) -> Iterator[EventStore]:
    ticks = itertools.count(1_700_000_000)
    opened = EventStore.open(store_url, upgrade=True, clock=lambda: float(next(ticks)))
    yield opened
    opened.close()


def test_insert_find_revoke(clocked: EventStore) -> None:
    assert not clocked.has_tokens()
    stored = clocked.insert_token("t1", "ci", "viewer", "h" * 64)
    assert clocked.has_tokens()
    found = clocked.find_token_by_hash("h" * 64)
    assert found == stored
    assert found is not None
    assert (found.name, found.role, found.is_revoked) == ("ci", "viewer", False)
    assert clocked.find_token_by_hash("x" * 64) is None

    assert clocked.revoke_token("t1") is True
    assert clocked.revoke_token("t1") is False  # already revoked
    assert clocked.revoke_token("nope") is False
    revoked = clocked.find_token_by_hash("h" * 64)
    assert revoked is not None
    assert revoked.is_revoked
    assert revoked.revoked_at is not None
    assert revoked.revoked_at > stored.created_at
    assert not clocked.has_tokens()


def test_duplicate_id_or_hash_is_refused(clocked: EventStore) -> None:
    clocked.insert_token("t1", "a", "admin", "h1")
    with pytest.raises(StoreError, match="already exists"):
        clocked.insert_token("t1", "b", "admin", "h2")
    with pytest.raises(StoreError, match="already exists"):
        clocked.insert_token("t2", "b", "admin", "h1")
    clocked.insert_token("t2", "b", "service", "h2")
    assert [t.token_id for t in clocked.list_tokens()] == ["t1", "t2"]


def test_gateway_authenticates_against_the_store(clocked: EventStore) -> None:
    tokens = StoreTokenStore(clocked)
    secret, record = create_token(tokens, "dashboard", Role.EXPERIMENTER)
    stored = clocked.find_token_by_hash(hash_token(secret))
    assert stored is not None
    assert stored.role == "experimenter"
    assert stored.token_id == record.token_id

    authenticator = TokenAuthenticator(tokens, cache_ttl_seconds=0.0)
    assert authenticator.authenticate(f"Bearer {secret}").name == "dashboard"
    tokens.revoke_token(record.token_id)
    with pytest.raises(AuthenticationError):
        authenticator.authenticate(f"Bearer {secret}")
