"""The event store: events, experiment versions and phases, API tokens, the audit trail.

The only package that imports SQLAlchemy. Open a store with :meth:`EventStore.open`; bring a
server's schema up to date with :func:`upgrade_store` (``abflow db upgrade``).
"""

from __future__ import annotations

from abflow.store.engine import DEFAULT_STORE_URL, STORE_URL_ENV, resolve_url
from abflow.store.event_store import EventStore, read_store_version, upgrade_store
from abflow.store.experiments import ExperimentVersion, Phase
from abflow.store.ids import new_event_id
from abflow.store.migrations import SCHEMA_VERSION, UpgradeResult
from abflow.store.tokens import StoredToken
from abflow.store.writer import EventKind

__all__ = [
    "DEFAULT_STORE_URL",
    "SCHEMA_VERSION",
    "STORE_URL_ENV",
    "EventKind",
    "EventStore",
    "ExperimentVersion",
    "Phase",
    "StoredToken",
    "UpgradeResult",
    "new_event_id",
    "read_store_version",
    "resolve_url",
    "upgrade_store",
]
