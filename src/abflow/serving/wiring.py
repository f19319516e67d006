"""Default production parts of the gateway: the store-backed catalog and token store, and
the durable event log in a journal slot of its own.

Each worker process needs its own journal directory (the journal locks it). Workers claim
the first free slot ``journal_dir/worker-N``; a restarted gateway re-claims the same slots
and so replays whatever a killed worker left behind.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from abflow.errors import JournalError
from abflow.events.eventlog import EventLog
from abflow.security.roles import parse_role
from abflow.security.tokens import InMemoryTokenStore, TokenRecord, TokenStore
from abflow.serving.catalog import Registration
from abflow.serving.settings import TokenEntry
from abflow.spec import ExperimentSpec
from abflow.store import EventStore

__all__ = [
    "CombinedTokenStore",
    "StoreCatalog",
    "StoreTokenStore",
    "claim_event_log",
    "config_token_store",
]

MAX_JOURNAL_SLOTS = 64


class StoreCatalog:
    """Registers specs in the event store, which decides versions and phases."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def register(self, spec: ExperimentSpec, actor: str = "system") -> Registration:
        stored = self._store.register_experiment(spec, actor=actor)
        return Registration(stored.version, stored.phase, stored.spec)


class StoreTokenStore:
    """Token records in the event store's ``api_tokens`` table."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def insert_token(self, record: TokenRecord) -> None:
        self._store.insert_token(
            token_id=record.token_id,
            name=record.name,
            role=record.role.value,
            token_hash=record.token_hash,
        )

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        row = self._store.find_token_by_hash(token_hash)
        if row is None:
            return None
        return TokenRecord(
            token_id=row.token_id,
            name=row.name,
            role=parse_role(row.role),
            token_hash=row.token_hash,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )

    def revoke_token(self, token_id: str) -> None:
        self._store.revoke_token(token_id)

    def has_tokens(self) -> bool:
        return self._store.has_tokens()


class CombinedTokenStore:
    """Tokens from the config file first, then the store; new tokens go to the store."""

    def __init__(self, primary: TokenStore, extra: TokenStore) -> None:
        self._primary = primary
        self._extra = extra

    def insert_token(self, record: TokenRecord) -> None:
        self._primary.insert_token(record)

    def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        return self._extra.find_token_by_hash(token_hash) or self._primary.find_token_by_hash(
            token_hash
        )

    def revoke_token(self, token_id: str) -> None:
        self._primary.revoke_token(token_id)

    def has_tokens(self) -> bool:
        return self._extra.has_tokens() or self._primary.has_tokens()


def config_token_store(entries: list[TokenEntry]) -> InMemoryTokenStore:
    """Tokens listed (by hash) in the gateway config."""
    now = time.time()
    return InMemoryTokenStore(
        [
            TokenRecord(f"config-{i}", e.name, e.role, e.token_hash, now)
            for i, e in enumerate(entries)
        ]
    )


def claim_event_log(store_url: str | None, journal_dir: Path, **tuning: Any) -> EventLog:
    """Start an EventLog in the first journal slot no other live process holds."""
    last: JournalError | None = None
    for slot in range(MAX_JOURNAL_SLOTS):
        log = EventLog(store_url, journal_dir / f"worker-{slot}", **tuning)
        try:
            log.start()
        except JournalError as exc:
            if "in use" not in str(exc):
                raise
            last = exc
            continue
        return log
    msg = f"all {MAX_JOURNAL_SLOTS} journal slots under {journal_dir} are in use"
    raise JournalError(msg) from last
