"""Each monitor result says what it was compared with, and the store keeps it.

``reference`` is what lets analysis tell train/serve skew (feature drift against the
model's training sample) from drift over time (against a reference window).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlalchemy as sa

from abflow.monitoring.monitor import evaluate_window
from abflow.spec import ExperimentSpec, parse_experiment
from abflow.store import EventStore
from abflow.store.migrations import upgrade
from abflow.store.monitoring import (
    MonitorRecord,
    WindowSample,
    monitor_history,
    save_monitor_results,
)
from abflow.store.schema import monitor_results

HOUR = 3600.0
START = 1_780_000_000.0 - 1_780_000_000.0 % HOUR


def spec() -> ExperimentSpec:
    return parse_experiment(
        {
            "key": "fraud",
            "variants": [
                {"name": "control", "model": "python:m:control"},
                {"name": "challenger", "model": "python:m:challenger"},
            ],
            "weights": [0.5, 0.5],
            "monitoring": {"features": ["amount", "age"], "min_samples": 50},
        }
    )


def sample(rng: np.random.Generator, n: int = 200) -> WindowSample:
    rows = rng.normal(size=(n, 2))
    return WindowSample(rows.tolist(), [float(s) for s in rng.random(n)])


def test_feature_drift_against_a_training_sample_is_marked_training(
    rng: np.random.Generator,
) -> None:
    current = {"control": sample(rng), "challenger": sample(rng)}
    reference = {"control": sample(rng), "challenger": sample(rng)}
    training = {"amount": rng.normal(size=300).tolist(), "age": rng.normal(size=300).tolist()}
    report = evaluate_window(
        spec(), START, current, reference, {}, reference_by_variant={"challenger": training}
    )
    found = {(r.kind, r.variant, r.reference) for r in report.records}
    assert found == {
        ("feature_drift", "challenger", "training"),
        ("feature_drift", "control", "window"),
        ("prediction_drift", "challenger", "window"),
        ("prediction_drift", "control", "window"),
        ("variant_skew", "challenger", "control"),
    }
    given = evaluate_window(spec(), START, current, reference, {}, reference_features=training)
    drift = [r for r in given.records if r.kind == "feature_drift"]
    assert {r.reference for r in drift} == {"given"}
    assert len(drift) == 4  # two features of two variants


def record(reference: str) -> MonitorRecord:
    return MonitorRecord(
        experiment_key="fraud",
        window_start=START,
        window_end=START + HOUR,
        kind="feature_drift",
        variant="challenger",
        feature="amount",
        method="psi",
        value=0.3,
        p_value=None,
        threshold=0.2,
        is_alarm=True,
        n_reference=500,
        n_current=300,
        reference=reference,
    )


def test_history_keeps_the_reference_and_revision_0005_adds_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = sa.create_engine(url)
    try:
        upgrade(engine, target=4)
        row = {
            c.name: getattr(record(""), c.name)
            for c in monitor_results.columns
            if c.name not in {"seq", "reference"}
        }
        with engine.begin() as connection:
            connection.execute(sa.insert(monitor_results).values(**row))
        # Before the upgrade: read with an empty reference, not an error.
        assert [r.reference for r in monitor_history(engine, "fraud")] == [""]
        assert upgrade(engine).applied[0] == 5
        assert [r.reference for r in monitor_history(engine, "fraud")] == [""]
    finally:
        engine.dispose()
    with EventStore.open(url) as store:
        save_monitor_results(store, "fraud", START, [record("training")])
        assert monitor_history(store, "fraud") == [
            MonitorRecord(**{**_fields(record("training")), "computed_at": _computed(store)})
        ]


def _fields(r: MonitorRecord) -> dict[str, object]:
    return {name: getattr(r, name) for name in MonitorRecord.__dataclass_fields__}


def _computed(store: EventStore) -> float:
    with store.engine.connect() as connection:
        return float(connection.execute(sa.select(monitor_results.c.computed_at)).scalar_one())


def test_a_store_without_the_monitor_table_has_no_history(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        assert monitor_history(engine, "fraud") == []
    finally:
        engine.dispose()
