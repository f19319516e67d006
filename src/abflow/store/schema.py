"""The event store's tables (SQLAlchemy Core), portable across SQLite, PostgreSQL and DuckDB.

Timestamps are float seconds since the epoch (``ts``), stored as 64-bit doubles everywhere
(a 32-bit float, DuckDB's ``FLOAT``, would round today's epoch to minutes): portable, cheap
to write, and a day is ``floor(ts / 86400)`` in any dialect. Every event table is keyed by a caller-chosen
``event_id``, which is what makes writes idempotent: re-sending a batch stores nothing twice.

On PostgreSQL event ids compare byte by byte (``COLLATE "C"``): they are opaque keys, only
ever tested for equality, and a locale's collation (even ``C.UTF-8``, which PostgreSQL 15
does not treat as ``C``) makes every comparison in the primary key's B-tree call ``strcoll``.
In byte order a binary COPY of gateway-shaped ids costs the server about 10 % less CPU.

An outcome sent with only a request id, to a gateway process that did not answer that
request, is stored with ``unit_id`` :data:`UNRESOLVED_UNIT`: analysis finds its unit through
the prediction with the same ``request_id`` (see :mod:`abflow.store.aggregates`), so it
counts whichever replica answered and whenever that prediction reaches the store.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "EVENT_TABLES",
    "MAX_OUTCOME_VALUE",
    "UNRESOLVED_UNIT",
    "api_tokens",
    "audit_log",
    "experiment_versions",
    "exposures",
    "feature_samples",
    "leases",
    "metadata",
    "monitor_results",
    "outcomes",
    "phases",
    "predictions",
    "sticky_buckets",
]

metadata = MetaData()

MAX_OUTCOME_VALUE = 1e15
"""Largest outcome value, in magnitude, that the gateway accepts and analysis bins. Analysis
sums values and their squares in doubles: a value near 1.5e154 made a sum of squares
infinite, and the experiment's results could not be computed again; below this, a billion
such values still sum exactly enough, integers (revenue in micros, durations in
nanoseconds) are exact, and a quantile's bin index fits a 64-bit integer."""

UNRESOLVED_UNIT = ""
"""``outcomes.unit_id`` of an outcome joined by request id only (never a real unit: the
gateway refuses empty unit ids); ``ix_outcomes_unit`` finds these rows by name."""

KEY = String(128)
ID = String(64)
EVENT_ID = String(64).with_variant(String(64, collation="C"), "postgresql")
"""An event table's primary key: byte order on PostgreSQL (see the module docstring)."""

experiment_versions = Table(
    "experiment_versions",
    metadata,
    Column("experiment_key", KEY, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec_json", Text, nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
)

phases = Table(
    "phases",
    metadata,
    Column("experiment_key", KEY, primary_key=True),
    Column("phase", Integer, primary_key=True),
    Column("spec_version", Integer, nullable=False),
    Column("weights_json", Text, nullable=False),
    Column("coverage", Double, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double),
    Column("reason", Text, nullable=False, default=""),
    ForeignKeyConstraint(
        ["experiment_key", "spec_version"],
        ["experiment_versions.experiment_key", "experiment_versions.version"],
    ),
)

exposures = Table(
    "exposures",
    metadata,
    Column("event_id", EVENT_ID, primary_key=True),
    Column("ts", Double, nullable=False),
    Column("experiment_key", KEY, nullable=False),
    Column("phase", Integer, nullable=False),
    Column("unit_id", String(256), nullable=False),
    Column("variant", KEY, nullable=False),
    Column("attributes_json", Text),
    Index("ix_exposures_experiment", "experiment_key", "phase", "variant"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("event_id", EVENT_ID, primary_key=True),
    Column("ts", Double, nullable=False),
    Column("request_id", ID, nullable=False),
    Column("experiment_key", KEY, nullable=False),
    Column("phase", Integer, nullable=False),
    Column("unit_id", String(256), nullable=False),
    Column("variant", KEY, nullable=False),
    Column("model_version", String(256), nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("is_fallback", Boolean, nullable=False, default=False),
    Column("is_shadow", Boolean, nullable=False, default=False),
    Column("score", Double),
    Column("output_json", Text),
    Column("features_hash", String(64)),
    Column("error", Text),
    Index("ix_predictions_experiment", "experiment_key", "phase", "variant"),
    Index("ix_predictions_request", "request_id"),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("event_id", EVENT_ID, primary_key=True),
    Column("ts", Double, nullable=False),
    Column("unit_id", String(256), nullable=False),
    Column("name", KEY, nullable=False),
    Column("value", Double, nullable=False),
    Column("request_id", ID),
    Column("experiment_key", KEY),
    Index("ix_outcomes_unit", "unit_id", "name"),
    Index("ix_outcomes_request", "request_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts", Double, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("experiment_key", KEY),
    Column("payload_json", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    # One successor per entry: even a writer that bypassed the append lock cannot fork it.
    Index("ux_audit_log_prev_hash", "prev_hash", unique=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", ID, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double),
)

feature_samples = Table(
    "feature_samples",
    metadata,
    Column("event_id", EVENT_ID, primary_key=True),
    Column("ts", Double, nullable=False),
    Column("request_id", ID, nullable=False),
    Column("experiment_key", KEY, nullable=False),
    Column("phase", Integer, nullable=False),
    Column("variant", KEY, nullable=False),
    Column("model_version", String(256), nullable=False),
    Column("window_start", Double, nullable=False),
    Column("priority", Double, nullable=False),
    Column("features_json", Text, nullable=False),
    Column("score", Double),
    Index("ix_feature_samples_window", "experiment_key", "window_start", "variant", "priority"),
)
"""A monitoring sample of one served row: its features and score (see
:mod:`abflow.events.sampling`). ``priority`` is the row's uniform draw: a window's sample is
its rows of lowest priority, however many replicas wrote them."""

monitor_results = Table(
    "monitor_results",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("experiment_key", KEY, nullable=False),
    Column("window_start", Double, nullable=False),
    Column("window_end", Double, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("variant", KEY, nullable=False, default=""),
    Column("feature", KEY, nullable=False, default=""),
    Column("method", String(32), nullable=False, default=""),
    Column("value", Double),
    Column("p_value", Double),
    Column("threshold", Double),
    Column("is_alarm", Boolean, nullable=False, default=False),
    Column("n_reference", Integer, nullable=False, default=0),
    Column("n_current", Integer, nullable=False, default=0),
    Column("computed_at", Double, nullable=False),
    Column("reference", String(16), nullable=False, default="", server_default=""),
    Index("ix_monitor_results_window", "experiment_key", "window_start"),
)
"""The monitor's history: one row per measure, variant, feature and window (the latest
computation of a window replaces the earlier ones). ``reference`` says what a measure was
compared with (:data:`abflow.store.monitoring.REFERENCES`; empty in rows from before
revision 0005)."""

sticky_buckets = Table(
    "sticky_buckets",
    metadata,
    Column("attribute", KEY, primary_key=True),
    Column("value", String(256), primary_key=True),
    Column("bucket_key", String(160), primary_key=True),
    Column("variant", KEY, nullable=False),
    Column("updated_at", Double, nullable=False),
)
"""Sticky bucketing: the variant an attribute value was given, per ``bucket_key``
(``"<experiment>__<bucket version>"``); the rows of one (attribute, value) are GrowthBook's
assignment document. One row per entry, so replicas saving two experiments' entries for the
same unit at once never overwrite each other."""

leases = Table(
    "leases",
    metadata,
    Column("name", KEY, primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("expires_at", Double, nullable=False),
)
"""Named leases (see :mod:`abflow.store.leases`): which process may do a job that only one
process at a time should do, and until when."""

EVENT_TABLES = {
    "exposure": exposures,
    "prediction": predictions,
    "outcome": outcomes,
    "sample": feature_samples,
}
"""Event kind → table: every event the gateway logs lands in one of these."""
