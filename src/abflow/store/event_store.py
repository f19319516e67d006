"""The event store's facade: one typed object for events, experiments, tokens and the audit trail.

``EventStore.open(url)`` picks the backend from the URL (SQLite by default, PostgreSQL via
psycopg 3). Every method runs its own short transaction and is safe to call from several
threads at once (the gateway ships events from a background thread while request threads
read): each call checks a connection out of the engine's pool.

Schema policy: opening a store never silently changes a schema that another process may
depend on. A SQLite store is embedded and private to this installation, so ``open`` upgrades
it automatically; any other store (PostgreSQL) must be upgraded explicitly with ``abflow db
upgrade`` (or ``upgrade=True``), and ``open`` raises StoreError while its schema is behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from abflow.errors import InvalidSpecError, StoreError
from abflow.security.audit import (
    GENESIS_HASH,
    AuditCheck,
    AuditEntry,
    StoredSpecVersion,
    canonical_json,
    entry_hash,
    verify_chain,
    verify_spec_versions,
)
from abflow.spec import ExperimentSpec, challenger_share
from abflow.store import experiments, migrations, tokens, writer
from abflow.store.engine import (
    SQLITE_CACHE_KIB,
    StoreTimeouts,
    create_store_engine,
    display_url,
    require_existing_store,
    translating,
    write_transaction,
)
from abflow.store.schema import audit_log, experiment_versions
from abflow.store.writer import EventKind

__all__ = ["EventStore", "read_store_version", "upgrade_store"]

_RETRY_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure
_WRITE_ATTEMPTS = 3


def upgrade_store(url: str | None = None) -> migrations.UpgradeResult:
    """Bring the schema of the store at ``url`` up to date (``abflow db upgrade``)."""
    engine = create_store_engine(url)
    try:
        return migrations.upgrade(engine)
    finally:
        engine.dispose()


def read_store_version(url: str | None = None) -> int:
    """The schema version of the store at ``url`` (0 for an empty database), changing nothing."""
    engine = create_store_engine(url)
    try:
        return migrations.read_version(engine)
    finally:
        engine.dispose()


class EventStore:
    """Events, experiment versions and phases, API tokens and the audit trail, in one database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        """Wrap an engine made by :func:`abflow.store.engine.create_store_engine`; prefer open()."""
        self._engine = engine
        self._clock = clock
        self._write_state = writer.WriteState()

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        upgrade: bool | None = None,
        clock: Callable[[], float] = time.time,
        sqlite_cache_kib: int = SQLITE_CACHE_KIB,
        timeouts: StoreTimeouts | None = None,
        must_exist: bool = False,
    ) -> EventStore:
        """Open the store at ``url`` (default ``$ABFLOW_STORE_URL``, else ``.abflow/abflow.db``).

        ``upgrade=None`` upgrades SQLite stores and refuses outdated others (see the module
        docstring); True or False force the choice. Raises StoreUnavailableError when the
        server cannot be reached, StoreError when the schema does not match this abflow.
        ``sqlite_cache_kib`` sizes each SQLite connection's page cache; ``timeouts`` bound
        every PostgreSQL call (:class:`abflow.store.engine.StoreTimeouts`). ``must_exist``
        refuses a SQLite file that does not exist instead of creating it (read-only commands).
        """
        if must_exist:
            url = require_existing_store(url)
        engine = create_store_engine(url, sqlite_cache_kib=sqlite_cache_kib, timeouts=timeouts)
        try:
            version = migrations.read_version(engine)
            needed = migrations.SCHEMA_VERSION
            if version < needed:
                if upgrade is None:
                    upgrade = engine.dialect.name == "sqlite"
                if not upgrade:
                    where = display_url(engine.url)
                    msg = (
                        f"the store at {where} has schema version {version}, this abflow needs "
                        f"{needed}: run `abflow db upgrade --store {where}`"
                    )
                    raise StoreError(msg)
                migrations.upgrade(engine)
            elif version > needed:
                msg = (
                    f"the store at {display_url(engine.url)} has schema version {version}, newer "
                    f"than this abflow knows ({needed}): upgrade abflow"
                )
                raise StoreError(msg)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store's URL with any password masked."""
        return display_url(self._engine.url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return str(self._engine.dialect.name)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for the store's own SQL modules (aggregates, rollups)."""
        return self._engine

    def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def schema_version(self) -> int:
        """The version of the store's schema (see :mod:`abflow.store.migrations`)."""
        return migrations.read_version(self._engine)

    # --- events ------------------------------------------------------------------------------

    def write_events(self, kind: EventKind, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store a batch of events idempotently by ``event_id``; return how many were new.

        Rows are mappings keyed by the columns of the kind's table; a missing required column
        raises StoreError naming it, before anything is written. The whole batch commits or
        none of it does.
        """
        layout = writer.layout_for(kind)
        values = writer.rows_to_tuples(layout, rows)
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                return writer.write_batch(self._engine, layout, values, self._write_state)
            except StoreError as exc:
                sqlstate = getattr(getattr(exc.__cause__, "orig", exc.__cause__), "sqlstate", None)
                if sqlstate not in _RETRY_SQLSTATES or attempt == _WRITE_ATTEMPTS:
                    raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    def count_events(self, kind: EventKind, experiment_key: str | None = None) -> int:
        """How many events of ``kind`` are stored (for one experiment, if given)."""
        table = writer.layout_for(kind).table
        query = sa.select(sa.func.count()).select_from(table)
        if experiment_key is not None:
            query = query.where(table.c.experiment_key == experiment_key)
        with translating("count events"), self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    # --- experiments and phases --------------------------------------------------------------

    def register_experiment(
        self, spec: ExperimentSpec, *, reason: str | None = None, actor: str = "system"
    ) -> experiments.ExperimentVersion:
        """Store ``spec`` as a new version if it changed; open a new phase if its traffic did.

        Registering an unchanged spec returns the stored version and writes nothing.
        ``reason`` is recorded on a phase this opens (e.g. "ramp step 2: 25%"). A new version
        is recorded in the audit trail, in the same transaction, as done by ``actor``.
        """
        with write_transaction(self._engine) as connection:
            _lock_experiments(connection)
            last_move = _last_rollout_action(connection, spec.key)
            _refuse_traffic_after_a_rollback(spec, last_move)
            before_start = last_move in (None, RESET)
            return self._register(connection, spec, reason, actor, is_before_start=before_start)

    def _register(
        self,
        connection: sa.Connection,
        spec: ExperimentSpec,
        reason: str | None,
        actor: str,
        *,
        is_before_start: bool,
    ) -> experiments.ExperimentVersion:
        """Store a version inside the caller's locked transaction; audit it if new."""
        stored = experiments.register(
            connection, spec, self._clock(), reason, is_before_start=is_before_start
        )
        if stored.is_new_version:
            payload = {
                "version": stored.version,
                "spec_hash": stored.spec_hash,
                "phase": stored.phase,
                "new_phase": stored.is_new_phase,
                "reason": reason or "",
            }
            self._append_audit(connection, actor, "experiment.registered", payload, spec.key)
        return stored

    def register_if_unchanged(
        self,
        spec: ExperimentSpec,
        *,
        actions: Collection[str],
        last_seq: int | None,
        action: str,
        payload: Mapping[str, Any],
        reason: str,
        actor: str,
    ) -> bool:
        """Register ``spec`` and append ``action`` to the audit trail, in one transaction, if
        the experiment's last audit entry among ``actions`` is still ``last_seq``.

        A compare-and-set for controllers: a decision taken on a state someone else has
        changed since is dropped (False), never half-applied.
        """
        with write_transaction(self._engine) as connection:
            _lock_experiments(connection)
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("LOCK TABLE audit_log IN EXCLUSIVE MODE")
            latest = connection.execute(
                sa.select(sa.func.max(audit_log.c.seq)).where(
                    audit_log.c.experiment_key == spec.key, audit_log.c.action.in_(list(actions))
                )
            ).scalar_one_or_none()
            if latest != last_seq:
                return False
            # The controller's own move: it is what starts the rollout.
            self._register(connection, spec, reason, actor, is_before_start=False)
            self._append_audit(connection, actor, action, payload, spec.key)
            return True

    def restart_phase(self, key: str, reason: str) -> experiments.Phase:
        """Close experiment ``key``'s phase and open the next with the same traffic.

        Analysis then ignores the units logged before (e.g. after a logging bug was fixed).
        """
        with write_transaction(self._engine) as connection:
            _lock_experiments(connection)
            return experiments.restart_phase(connection, key, self._clock(), reason)

    def get_experiment(self, key: str) -> experiments.ExperimentVersion:
        """The newest version of experiment ``key``; ExperimentNotFoundError if unknown."""
        with translating("read an experiment"), self._engine.connect() as connection:
            return experiments.latest_version(connection, key)

    def list_experiments(self) -> list[experiments.ExperimentVersion]:
        """The newest version of every registered experiment, sorted by key."""
        with translating("list experiments"), self._engine.connect() as connection:
            return experiments.list_latest_versions(connection)

    def phases(self, key: str) -> list[experiments.Phase]:
        """Every phase of experiment ``key``, oldest first; ExperimentNotFoundError if unknown."""
        with translating("read phases"), self._engine.connect() as connection:
            return experiments.fetch_phases(connection, key)

    def current_phase(self, key: str) -> experiments.Phase:
        """The phase new events of experiment ``key`` belong to."""
        return self.phases(key)[-1]

    # --- API tokens (the gateway hashes; see abflow.security.tokens) -------------------------

    def insert_token(
        self, token_id: str, name: str, role: str, token_hash: str, *, actor: str = "system"
    ) -> tokens.StoredToken:
        """Store a new token's record (audited; never its hash); StoreError if already stored."""
        with write_transaction(self._engine) as connection:
            stored = tokens.insert(connection, token_id, name, role, token_hash, self._clock())
            payload = {"token_id": token_id, "name": name, "role": role}
            self._append_audit(connection, actor, "token.created", payload, None)
            return stored

    def find_token_by_hash(self, token_hash: str) -> tokens.StoredToken | None:
        """The record with this hash, revoked or not (check ``is_revoked``); None if unknown."""
        with translating("look up a token"), self._engine.connect() as connection:
            return tokens.find_by_hash(connection, token_hash)

    def revoke_token(self, token_id: str, *, actor: str = "system") -> bool:
        """Revoke a token (audited); False when no active token has this id."""
        with write_transaction(self._engine) as connection:
            revoked = tokens.revoke(connection, token_id, self._clock())
            if revoked:
                payload = {"token_id": token_id}
                self._append_audit(connection, actor, "token.revoked", payload, None)
            return revoked

    def has_tokens(self) -> bool:
        """Whether any token that is not revoked exists."""
        with translating("look up tokens"), self._engine.connect() as connection:
            return tokens.has_active(connection)

    def list_tokens(self) -> list[tokens.StoredToken]:
        """Every token record (without secrets), oldest first."""
        with translating("list tokens"), self._engine.connect() as connection:
            return tokens.list_all(connection)

    # --- audit trail -------------------------------------------------------------------------

    def append_audit(
        self,
        actor: str,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        experiment_key: str | None = None,
    ) -> AuditEntry:
        """Append an entry to the hash-chained audit trail and return it as stored.

        Appends are serialized (write lock on SQLite, table lock on PostgreSQL), so two
        writers can never both extend the same entry and fork the chain.
        """
        with write_transaction(self._engine) as connection:
            return self._append_audit(connection, actor, action, payload, experiment_key)

    def _append_audit(
        self,
        connection: sa.Connection,
        actor: str,
        action: str,
        payload: Mapping[str, Any] | None,
        experiment_key: str | None,
    ) -> AuditEntry:
        """Extend the chain inside the caller's write transaction."""
        body = dict(payload or {})
        payload_json = canonical_json(body)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("LOCK TABLE audit_log IN EXCLUSIVE MODE")
        last = connection.execute(
            sa.select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).scalar_one_or_none()
        prev_hash = last if last is not None else GENESIS_HASH
        ts = float(self._clock())
        content: dict[str, Any] = {
            "ts": ts,
            "actor": actor,
            "action": action,
            "experiment_key": experiment_key,
            "payload": body,
        }
        digest = entry_hash(prev_hash, content)
        result = connection.execute(
            audit_log.insert().values(
                ts=ts,
                actor=actor,
                action=action,
                experiment_key=experiment_key,
                payload_json=payload_json,
                prev_hash=prev_hash,
                hash=digest,
            )
        )
        key = result.inserted_primary_key
        seq = int(key[0]) if key is not None else 0
        return AuditEntry(seq, ts, actor, action, experiment_key, body, prev_hash, digest)

    def audit_entries(self, experiment_key: str | None = None) -> list[AuditEntry]:
        """The audit trail in order (only one experiment's entries, if given)."""
        query = sa.select(audit_log).order_by(audit_log.c.seq)
        if experiment_key is not None:
            query = query.where(audit_log.c.experiment_key == experiment_key)
        with translating("read the audit trail"), self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_audit_from_row(row) for row in rows]

    def check_audit(self) -> AuditCheck:
        """The audit trail and the stored spec versions, read in one snapshot (a registration
        landing between two reads would look like a version without an entry), checked."""
        v = experiment_versions
        versions = sa.select(v.c.experiment_key, v.c.version, v.c.spec_hash, v.c.spec_json)
        with translating("read the audit trail"), self._engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                rows = connection.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
                stored = connection.execute(versions.order_by(v.c.experiment_key, v.c.version))
                specs = [StoredSpecVersion(r[0], int(r[1]), str(r[2]), str(r[3])) for r in stored]
        entries = [_audit_from_row(row) for row in rows]
        return AuditCheck(entries, verify_chain(entries), verify_spec_versions(entries, specs))

    def verify_audit(self) -> list[str]:
        """Every break in the audit trail's hash chain, oldest first, then every stored spec
        version that disagrees with it; [] when intact."""
        return self.check_audit().problems


def _lock_experiments(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Serialize registrations: version and phase numbers are read, then incremented.
        connection.exec_driver_sql("LOCK TABLE experiment_versions IN SHARE ROW EXCLUSIVE MODE")


def _audit_from_row(row: sa.Row[Any]) -> AuditEntry:
    try:
        payload = json.loads(row.payload_json)
    except ValueError:
        payload = {"unreadable_payload_json": row.payload_json}
    return AuditEntry(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        experiment_key=row.experiment_key,
        payload=payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


ROLLED_BACK = "rollout.rolled_back"
"""The audit action of a rollback (abflow.rollout.plan.ROLLOUT_ACTIONS names them all)."""
RESET = "rollout.reset"
"""The audit action that lets a rolled-back rollout start over: its plan is back at 0 %."""


def _last_rollout_action(connection: sa.Connection, key: str) -> str | None:
    """The experiment's last ``rollout.*`` audit action (None: its rollout never moved)."""
    action: str | None = connection.execute(
        sa.select(audit_log.c.action)
        .where(audit_log.c.experiment_key == key, audit_log.c.action.like("rollout.%"))
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    return action


def _refuse_traffic_after_a_rollback(spec: ExperimentSpec, last_move: str | None) -> None:
    """A spec file registered again after a rollback must not hand the challenger traffic:
    its explicit weights would undo the rollback, which only ``abflow rollout reset`` may."""
    if spec.rollout is None or spec.weights is None:
        return
    share = challenger_share(spec)
    if not share:
        return
    if last_move == ROLLED_BACK:
        problem = (
            f"weights {spec.effective_weights} give the challenger {share:g} of traffic, but "
            "its rollout was rolled back; leave 'weights' out, or start the plan again with "
            "`abflow rollout reset`"
        )
        raise InvalidSpecError([f"weights: {problem}"], spec.key)
