"""Default production parts of the gateway: the store-backed catalog and token store, the
durable event log in a journal slot of its own, and the live monitor's task.

Each worker process needs its own journal directory (the journal locks it). Workers claim
the first free slot ``journal_dir/worker-N``; a restarted gateway re-claims the same slots
and so replays whatever a killed worker left behind.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abflow.errors import JournalError
from abflow.events.eventlog import EventLog
from abflow.security.roles import parse_role
from abflow.security.tokens import InMemoryTokenStore, TokenRecord, TokenStore
from abflow.serving.catalog import Registration
from abflow.serving.settings import MonitorConfig, TokenEntry
from abflow.spec import ExperimentSpec
from abflow.store import EventStore

if TYPE_CHECKING:
    from abflow.monitoring.monitor_metrics import MonitorMetrics
    from abflow.monitoring.runner import MonitorRunner
    from abflow.monitoring.task import MonitorTask

__all__ = [
    "CombinedTokenStore",
    "GatewayMonitor",
    "StoreCatalog",
    "StoreTokenStore",
    "claim_event_log",
    "config_token_store",
    "open_monitor",
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


@dataclass(frozen=True, slots=True)
class GatewayMonitor:
    """The monitor task with the store connection and runner it owns."""

    task: MonitorTask
    runner: MonitorRunner
    store: EventStore

    async def stop(self, timeout_seconds: float) -> None:
        """Stop the task (see :meth:`MonitorTask.stop`), then let go of its store."""
        await self.task.stop(timeout_seconds)
        await asyncio.to_thread(self.runner.close)
        await asyncio.to_thread(self.store.close)


def open_monitor(
    store_url: str, config: MonitorConfig, interval_seconds: float, metrics: MonitorMetrics
) -> GatewayMonitor:
    """The live monitor for a gateway process (blocking: it opens the store).

    The monitor has a connection pool of its own: its queries are analysis-sized, with no
    statement timeout, and never hold a connection that a request is waiting for.
    """
    from abflow.monitoring.monitor import MonitorOptions
    from abflow.monitoring.runner import MonitorRunner
    from abflow.monitoring.task import LEASE_NAME, MonitorTask
    from abflow.store.leases import Lease

    training = None
    if config.reference == "auto":
        from abflow.registry.training_data import training_sample

        training = training_sample
    store = EventStore.open(store_url)
    options = MonitorOptions(
        lookback_windows=config.lookback_windows,
        label_event=config.label_event,
        threshold=config.threshold,
    )
    runner = MonitorRunner(store, options, metrics, training_sample=training)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    task = MonitorTask(runner, Lease(store, LEASE_NAME, holder), interval_seconds)
    return GatewayMonitor(task, runner, store)
