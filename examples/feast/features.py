"""Feature definitions of the example Feast repo: per-user transaction statistics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

DATA = Path(__file__).resolve().parent / "data"

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)

user_stats_source = FileSource(
    path=str(DATA / "user_stats.parquet"),
    timestamp_field="event_timestamp",
)

user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[
        Field(name="txn_count_7d", dtype=Int64),
        Field(name="avg_amount_7d", dtype=Float64),
        Field(name="country", dtype=String),
    ],
    source=user_stats_source,
    online=True,
)

DEFINITIONS = [user, user_stats]
