"""Each monitor result says what it was compared with, and the store keeps it.

``reference`` is what lets analysis tell train/serve skew (feature drift against the
model's training sample) from drift over time (against a reference window).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from abflow.analysis import AnalysisOptions, analyze
from abflow.events.sampling import FeatureSampler
from abflow.events.sink import prediction_row
from abflow.monitoring.monitor import MonitorOptions, evaluate_window, monitor_experiment
from abflow.serving.features import row_hash
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


def test_analysis_flags_skew_found_by_a_monitor_pass_against_training_data(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    experiment = parse_experiment(
        {
            "key": "fraud",
            "variants": [
                {"name": "control", "model": "python:m:control"},
                {"name": "challenger", "model": "python:m:challenger"},
            ],
            "monitoring": {
                "sample_rate": 1.0,
                "max_samples_per_window": 300,
                "features": ["amount", "age"],
                "min_samples": 100,
            },
        }
    )
    sampler = FeatureSampler(seed=3)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url, upgrade=True, clock=lambda: START - HOUR) as store:
        store.register_experiment(experiment, actor="test")  # its phase starts an hour before
        samples: list[dict[str, Any]] = []
        predictions = []
        for variant in experiment.variant_names:
            for i, row in enumerate(rng.normal(size=(300, 2))):
                request_id, ts = f"{variant}-{i}", START + i
                samples += sampler.offer(
                    config=experiment.monitoring, experiment_key="fraud", phase=1,
                    variant=variant, model_version="1", request_id=request_id,
                    rows=row[None, :], outputs=[0.5], ts=ts,
                )  # fmt: skip
                predictions.append(
                    prediction_row(
                        request_id=request_id,
                        experiment_key="fraud",
                        phase=1,
                        unit_id=f"u{i}",
                        variant=variant,
                        model_version="1",
                        latency_ms=1.0,
                        outputs=[0.5],
                        features_hash=row_hash(row),
                        ts=ts,
                    )
                )
        store.write_events("sample", samples)
        store.write_events("prediction", predictions)
        training = {
            "control": {"amount": rng.normal(size=500), "age": rng.normal(size=500)},
            "challenger": {"amount": rng.normal(1.5, 1.0, 500), "age": rng.normal(size=500)},
        }
        options = MonitorOptions(
            reference_by_variant={
                v: {name: column.tolist() for name, column in columns.items()}
                for v, columns in training.items()
            }
        )
        monitor_experiment(store, experiment, options, now=START + HOUR)
        history = monitor_history(store, "fraud")
        result = analyze(store, "fraud", AnalysisOptions(now=START + HOUR))
    alarms = [r for r in history if r.is_alarm and r.kind == "feature_drift"]
    assert [(r.variant, r.feature, r.reference) for r in alarms] == [
        ("challenger", "amount", "training")
    ]
    assert result.monitoring is not None
    assert result.monitoring.train_serve_skew == [
        f"train/serve skew: feature 'amount' of variant 'challenger' differs from its training "
        f"data (psi {alarms[0].value:.4f}, threshold {alarms[0].threshold:g}) in the window "
        "from " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(START))
    ]
    assert {(s.variant, s.samples, s.compared, s.identical) for s in result.sampled_features} == {
        ("control", 300, 300, 300),
        ("challenger", 300, 300, 300),
    }
