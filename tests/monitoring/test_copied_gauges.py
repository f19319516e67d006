"""A gateway process without the monitor lease copies the stored results into its gauges:
what that costs the store per interval, and that the copy shows what the whole history
would.

Statements are counted with SQLAlchemy's ``before_cursor_execute`` event, and the rows they
read by running each recorded query again on a connection of its own. The reference for the
gauges is the whole stored history (``monitor_history``) published as it stands.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from abflow.events.sampling import FeatureSampler
from abflow.monitoring.monitor import MonitorOptions
from abflow.monitoring.monitor_metrics import MonitorMetrics
from abflow.monitoring.runner import MonitorRunner
from abflow.monitoring.task import LEASE_NAME, MonitorTask
from abflow.serving.demo_models import N_FEATURES
from abflow.serving.settings import demo_config
from abflow.spec import ExperimentSpec, MonitoringSpec
from abflow.store import EventStore
from abflow.store.leases import Lease
from abflow.store.monitoring import (
    MonitorRecord,
    history_marks,
    latest_verdicts,
    monitor_history,
    save_monitor_results,
)

HOUR = 3600.0
WINDOWS = 6
MIN_SAMPLES = 20
KEYS = ("demo", "demo-b")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Statement = tuple[str, Any]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'abflow.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    with EventStore.open(url, upgrade=True) as opened:
        yield opened


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def gauges(metrics: MonitorMetrics) -> Samples:
    return parse(metrics.exposition().decode())


@contextmanager
def recording(engine: sa.Engine) -> Iterator[list[Statement]]:
    """Every statement ``engine`` runs inside the block, with its parameters."""
    seen: list[Statement] = []

    def record(*args: Any) -> None:
        _connection, _cursor, statement, parameters, _context, _many = args
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def queries(seen: list[Statement]) -> list[Statement]:
    """The statements but transaction control (SQLite's explicit BEGIN)."""
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
    return [(sql, params) for sql, params in seen if not sql.lstrip().upper().startswith(control)]


def rows_read(engine: sa.Engine, seen: list[Statement]) -> int:
    """How many rows the recorded queries return, run again now."""
    total = 0
    with engine.connect() as connection:
        for sql, params in queries(seen):
            if sql.lstrip().upper().startswith(("SELECT", "WITH", "PRAGMA")):
                total += len(connection.exec_driver_sql(sql, params).all())
    return total


def spec(key: str) -> ExperimentSpec:
    monitoring = MonitoringSpec(sample_rate=1.0, min_samples=MIN_SAMPLES)
    return demo_config().experiments[0].model_copy(update={"key": key, "monitoring": monitoring})


def write_samples(store: EventStore, key: str, rng: np.random.Generator) -> None:
    """Samples of ``WINDOWS`` hourly windows up to the current one, as the gateway keeps them."""
    sampler = FeatureSampler(seed=3)
    now = time.time()
    rows: list[dict[str, Any]] = []
    for window in range(WINDOWS):
        for variant, shift in (("control", 0.0), ("challenger", 0.1 * window)):
            for i in range(2 * MIN_SAMPLES):
                rows += sampler.offer(
                    config=spec(key).monitoring,
                    experiment_key=key,
                    phase=1,
                    variant=variant,
                    model_version="1",
                    request_id=f"{key}-{window}-{variant}-{i}",
                    rows=rng.normal(shift, 1.0, size=(1, N_FEATURES)),
                    outputs=[float(rng.random())],
                    ts=now - window * HOUR,
                )
    store.write_events("sample", rows)


def from_history(store: EventStore, options: MonitorOptions) -> Samples:
    """The gauges a copy of every stored result of the lookback would set."""
    metrics = MonitorMetrics(CollectorRegistry())
    for stored in store.list_experiments():
        key = stored.spec.key
        since = time.time() - (options.lookback_windows + 1) * HOUR
        records = monitor_history(store, key, since=since)
        if records:
            metrics.publish(key, records, max(r.computed_at for r in records))
    return gauges(metrics)


class CopyingRunner(MonitorRunner):
    """The gateway's runner, counting the intervals in which it copied the stored results."""

    copies = 0

    def publish_stored(self, keys: Any = None) -> None:
        super().publish_stored(keys)
        self.copies += 1


async def one_interval(runner: CopyingRunner, store: EventStore) -> None:
    """One tick of a monitor task whose lease another process holds."""
    task = MonitorTask(runner, Lease(store, LEASE_NAME, "copier"), interval_seconds=HOUR)
    before = runner.copies
    task.start()
    try:
        deadline = time.monotonic() + 120.0
        while runner.copies == before:
            assert time.monotonic() < deadline, "the task copied the results within 120 s"
            await asyncio.sleep(0.01)
    finally:
        await task.stop(60.0)


def interval(runner: CopyingRunner, store: EventStore) -> list[Statement]:
    with recording(store.engine) as seen:
        asyncio.run(one_interval(runner, store))
    return list(seen)


def test_a_process_without_the_lease_reads_the_history_only_after_a_pass(
    store: EventStore, rng: np.random.Generator
) -> None:
    for key in KEYS:
        write_samples(store, key, rng)
        store.register_experiment(spec(key))
    options = MonitorOptions()
    holder = MonitorRunner(store, options, MonitorMetrics(CollectorRegistry()))
    assert all(done.error is None and done.reports for done in holder.run_pass())
    assert Lease(store, LEASE_NAME, "holder").acquire(HOUR)
    copier = CopyingRunner(store, options, MonitorMetrics(CollectorRegistry()))

    history = [r for key in KEYS for r in monitor_history(store, key)]
    windows = {(r.experiment_key, r.window_start) for r in history}
    measures = {(r.experiment_key, r.kind, r.variant, r.feature, r.method) for r in history}
    assert len(windows) == WINDOWS * len(KEYS)
    assert len(history) == len(windows) * len(measures) // len(KEYS)
    # Each experiment's row in the catalog and its newest window's mark; when a pass has
    # ended, one row per measure and one per window besides (the history is that product).
    per_idle_interval = 2 * len(KEYS)
    per_copy = per_idle_interval + len(measures) + len(windows)
    assert per_copy < len(history) / 3

    first = interval(copier, store)
    assert rows_read(store.engine, first) <= per_copy
    assert gauges(copier.metrics) == from_history(store, options)

    idle = interval(copier, store)
    beside_lease = [(sql, params) for sql, params in queries(idle) if "leases" not in sql]
    assert len(beside_lease) <= 2, beside_lease
    assert rows_read(store.engine, idle) <= per_idle_interval
    assert gauges(copier.metrics) == from_history(store, options)

    time.sleep(0.01)  # the next pass is computed at a later time
    assert all(done.error is None for done in holder.run_pass())
    after_pass = interval(copier, store)
    assert rows_read(store.engine, after_pass) <= per_copy
    copied = gauges(copier.metrics)
    assert copied == from_history(store, options)
    newest = {key: max(r.computed_at for r in monitor_history(store, key)) for key in KEYS}
    for key in KEYS:
        last_run = copied[("abflow_monitor_last_run_timestamp_seconds", (("experiment", key),))]
        assert last_run == newest[key] > max(r.computed_at for r in history)


def record(
    window: float, kind: str, variant: str, feature: str, value: float | None, **more: Any
) -> MonitorRecord:
    fields: dict[str, Any] = {
        "p_value": None,
        "threshold": 0.2,
        "is_alarm": False,
        "n_reference": 100,
        "n_current": 100,
        "reference": "window",
        **more,
    }
    method = fields.pop("method", "psi")
    return MonitorRecord(
        "fraud", window, window + HOUR, kind, variant, feature, method, value, **fields
    )


def test_the_copy_shows_each_measures_latest_verdict_as_the_whole_history_does(
    store: EventStore,
) -> None:
    store.register_experiment(spec("fraud"))
    w0 = math.floor(time.time() / HOUR) * HOUR - 3 * HOUR
    w1, w2, w3 = w0 + HOUR, w0 + 2 * HOUR, w0 + 3 * HOUR
    stored = {
        w0 - 60 * HOUR: [record(w0 - 60 * HOUR, "feature_drift", "control", "f7", 0.9)],
        w0: [
            record(w0, "feature_drift", "control", "f0", 0.1),
            record(w0, "feature_drift", "control", "f1", 0.05),
            record(w0, "prediction_drift", "control", "", 0.01),
        ],
        w1: [
            record(w1, "feature_drift", "control", "f0", 0.3, is_alarm=True),
            record(w1, "feature_drift", "control", "f1", 0.06),
            record(w1, "prediction_drift", "control", "", 0.02),
            record(w1, "quality", "challenger", "", 0.75, method="precision", is_alarm=True),
        ],
        w2: [
            record(w2, "feature_drift", "control", "f0", None),
            record(w2, "feature_drift", "control", "f1", 0.07),
            record(w2, "prediction_drift", "control", "", 0.03),
            record(w2, "variant_skew", "challenger-b", "f0", 0.7, is_alarm=True),
        ],
        w3: [
            record(w3, "feature_drift", "control", "f0", None),
            record(w3, "feature_drift", "control", "f1", 0.02),
            record(w3, "prediction_drift", "control", "", None),
            record(w3, "variant_skew", "challenger-a", "f0", 0.4),
            record(w3, "variant_skew", "challenger-b", "f0", None),
        ],
    }
    for at, (window, records) in enumerate(stored.items()):
        save_monitor_results(store, "fraud", window, records, now=w3 + at)
    options = MonitorOptions()
    copier = MonitorRunner(store, options, MonitorMetrics(CollectorRegistry()))
    copier.publish_stored()
    copied = gauges(copier.metrics)
    assert copied == from_history(store, options)
    alarm = ("abflow_monitor_alarm", (("experiment", "fraud"), ("kind", "feature_drift")))
    assert copied[(alarm[0], (*alarm[1], ("variant", "control")))] == 1.0  # f0's, in w1
    skew = ("abflow_variant_skew", (("experiment", "fraud"), ("feature", "f0")))
    assert copied[skew] == 0.7  # challenger-b's verdict of w2 beats challenger-a's of w3
    assert not [labels for name, labels in copied if ("feature", "f7") in labels]

    # Each measure's newest verdict from a later start is what reading from there finds.
    read = latest_verdicts(store, "fraud", since=w0)
    assert [(r.feature, r.window_start) for r in read.records if r.kind == "feature_drift"] == [
        ("f0", w1),
        ("f1", w3),
    ]
    for start in (w1, w2, w3, w3 + 1.0):
        assert read.since(start) == latest_verdicts(store, "fraud", since=start)

    # A pass that rewrites the newest window with as many rows is seen, though SQLite hands
    # the rows the same ids again.
    mark = history_marks(store, [f"unknown-{i}" for i in range(150)] + ["fraud", "fraud"])
    assert list(mark) == ["fraud"]
    assert (mark["fraud"].window_start, mark["fraud"].n) == (w3, len(stored[w3]))
    rewritten = [*stored[w3][:1], record(w3, "feature_drift", "control", "f1", 0.9, is_alarm=True)]
    rewritten += stored[w3][2:]
    save_monitor_results(store, "fraud", w3, rewritten, now=w3 + 10)
    assert history_marks(store, ["fraud"])["fraud"] != mark["fraud"]
    copier.publish_stored()
    copied = gauges(copier.metrics)
    assert copied == from_history(store, options)
    f1 = ("experiment", "fraud"), ("feature", "f1"), ("method", "psi"), ("variant", "control")
    assert copied[("abflow_feature_drift", f1)] == 0.9
    last_run = ("abflow_monitor_last_run_timestamp_seconds", (("experiment", "fraud"),))
    assert copied[last_run] == w3 + 10
