"""Tokens: stored hashed, compared by hash, cached briefly, and checked against roles."""

from __future__ import annotations

import hashlib

import pytest

from abflow.errors import AuthenticationError, InvalidArgumentError, PermissionDeniedError
from abflow.security.roles import Role, parse_role, role_allows
from abflow.security.tokens import (
    TOKEN_PREFIX,
    InMemoryTokenStore,
    TokenAuthenticator,
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
