"""The live monitor on a real store: samples in, drift/skew/quality and gauges out.

References are independent of the monitor's own reading of the store: the samples a window
should use are picked here with pandas from the raw table (lowest priorities per variant),
drift is recomputed on them with :mod:`abflow.drift`, and quality with scikit-learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import confusion_matrix, precision_score, recall_score
from typer.testing import CliRunner

from abflow.drift import compare_feature, detect_drift
from abflow.events.sampling import FeatureSampler
from abflow.events.sink import outcome_row, prediction_row
from abflow.monitoring.monitor import MonitorOptions, monitor_experiment
from abflow.monitoring.monitor_metrics import MonitorMetrics
from abflow.spec import ExperimentSpec, parse_experiment
from abflow.store import EventStore
from abflow.store.monitoring import latest_alarms, monitor_history

HOUR = 3600.0
DAY0 = 1_780_000_000.0 - 1_780_000_000.0 % HOUR
"""A past hour (2026-05-28 20:00 UTC): the CLI leaves out windows that have not started."""
K = 300


def fraud_spec() -> ExperimentSpec:
    return parse_experiment(
        {
            "key": "fraud",
            "variants": [
                {"name": "control", "model": "python:m:control"},
                {"name": "challenger", "model": "python:m:challenger"},
            ],
            "weights": [0.5, 0.5],
            "monitoring": {
                "sample_rate": 1.0,
                "max_samples_per_window": K,
                "window_hours": 1,
                "features": ["amount", "age"],
                "min_samples": 100,
            },
        }
    )


def serve_window(
    store: EventStore,
    sampler: FeatureSampler,
    spec: ExperimentSpec,
    start: float,
    rng: np.random.Generator,
    *,
    shift: dict[str, float],
    n: int = 500,
    labels: bool = False,
) -> None:
    """``n`` requests per variant in the window starting at ``start``: features, a score (a
    fixed logistic model of the features) and, with ``labels``, a label per request."""
    samples: list[dict[str, Any]] = []
    preds: list[dict[str, Any]] = []
    labelled: list[dict[str, Any]] = []
    for variant in spec.variant_names:
        amount = rng.normal(shift.get(variant, 0.0), 1.0, size=n)
        age = rng.normal(0.0, 1.0, size=n)
        scores = 1.0 / (1.0 + np.exp(-(1.5 * amount - 1.0)))
        truth = rng.random(n) < 1.0 / (1.0 + np.exp(-(1.5 * age - 1.5)))
        for i in range(n):
            ts = start + (i + 0.5) * HOUR / n
            request_id = f"{variant}-{start:.0f}-{i}"
            row = np.array([[amount[i], age[i]]])
            samples += sampler.offer(
                config=spec.monitoring,
                experiment_key=spec.key,
                phase=1,
                variant=variant,
                model_version="1",
                request_id=request_id,
                rows=row,
                outputs=[float(scores[i])],
                ts=ts,
            )
            preds.append(
                prediction_row(
                    request_id=request_id,
                    experiment_key=spec.key,
                    phase=1,
                    unit_id=f"u{i}",
                    variant=variant,
                    model_version="1",
                    latency_ms=1.0,
                    outputs=[float(scores[i])],
                    features_hash=None,
                    ts=ts,
                )
            )
            if labels:
                labelled.append(
                    outcome_row(
                        unit_id=f"u{i}",
                        name="label",
                        value=float(truth[i]),
                        request_id=request_id,
                        experiment_key=spec.key,
                        ts=ts + 60.0,
                    )
                )
    store.write_events("sample", samples)
    store.write_events("prediction", preds)
    if labelled:
        store.write_events("outcome", labelled)


def raw_window_sample(store: EventStore, start: float, variant: str) -> pd.DataFrame:
    """The window's sample as the monitor must read it, picked here with pandas."""
    frame = pd.read_sql_table("feature_samples", store.engine)
    frame = frame[(frame.window_start == start) & (frame.variant == variant)]
    return frame.sort_values("priority").head(K)


def columns(frame: pd.DataFrame) -> dict[str, list[float]]:
    rows = [orjson.loads(text) for text in frame.features_json]
    return {"amount": [r[0] for r in rows], "age": [r[1] for r in rows]}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    with EventStore.open(url, upgrade=True) as opened:
        yield opened


def test_drift_skew_and_quality_match_independent_references(
    store: EventStore, rng: np.random.Generator
) -> None:
    spec = fraud_spec()
    store.register_experiment(spec, actor="test")
    sampler = FeatureSampler(seed=11)
    serve_window(store, sampler, spec, DAY0, rng, shift={}, labels=True)
    serve_window(store, sampler, spec, DAY0 + HOUR, rng, shift={}, labels=True)
    serve_window(store, sampler, spec, DAY0 + 2 * HOUR, rng, shift={"challenger": 1.0}, labels=True)

    reports = monitor_experiment(store, spec, MonitorOptions(), now=DAY0 + 3 * HOUR)
    assert [r.window_start for r in reports] == [DAY0, DAY0 + HOUR, DAY0 + 2 * HOUR]
    history = monitor_history(store, "fraud")
    assert len(history) == sum(len(r.records) for r in reports)

    def find(start: float, kind: str, variant: str, feature: str, method: str = "psi") -> Any:
        (found,) = [
            r
            for r in history
            if (r.window_start, r.kind, r.variant, r.feature, r.method)
            == (start, kind, variant, feature, method)
        ]
        return found

    # Feature and prediction drift vs the first window, on the rows picked with pandas.
    for start in (DAY0 + HOUR, DAY0 + 2 * HOUR):
        for variant in ("control", "challenger"):
            reference = raw_window_sample(store, DAY0, variant)
            current = raw_window_sample(store, start, variant)
            expected = detect_drift(columns(reference), columns(current), method="psi")
            for verdict in expected.features:
                got = find(start, "feature_drift", variant, verdict.feature)
                assert_allclose(got.value, verdict.statistic)
                assert got.is_alarm == verdict.drifted
                assert got.n_current == len(current) == K
            score = compare_feature(
                "score", list(reference.score), list(current.score), method="psi"
            )
            got = find(start, "prediction_drift", variant, "score")
            assert_allclose(got.value, score.statistic)
            assert got.is_alarm == score.drifted
    # The shift: the challenger's amount and scores drift in the last window, nothing else.
    last = DAY0 + 2 * HOUR
    assert find(last, "feature_drift", "challenger", "amount").is_alarm
    assert find(last, "prediction_drift", "challenger", "score").is_alarm
    assert not find(last, "feature_drift", "control", "amount").is_alarm
    assert not find(last, "prediction_drift", "control", "score").is_alarm
    assert not [a for a in reports[1].alarms if a.kind != "quality"]
    # Skew: the challenger's inputs against the control's on the same window.
    assert find(last, "variant_skew", "challenger", "amount").is_alarm
    assert not find(last, "variant_skew", "challenger", "age").is_alarm
    control = columns(raw_window_sample(store, last, "control"))
    challenger = columns(raw_window_sample(store, last, "challenger"))
    skew = detect_drift(control, challenger, method="psi")
    assert_allclose(
        find(last, "variant_skew", "challenger", "amount").value, skew.features[0].statistic
    )

    # Quality per variant against scikit-learn on the raw predictions and labels.
    preds = pd.read_sql_table("predictions", store.engine)
    labels = pd.read_sql_table("outcomes", store.engine)
    joined = preds.merge(labels[["request_id", "value"]], on="request_id")
    for start in (DAY0, last):
        for variant in ("control", "challenger"):
            rows = joined[
                (joined.variant == variant) & (joined.ts >= start) & (joined.ts < start + HOUR)
            ]
            y_true = rows.value >= 0.5
            y_pred = rows.score >= 0.5
            tn, fp = confusion_matrix(y_true, y_pred, labels=[False, True]).ravel()[:2]
            assert_allclose(find(start, "quality", variant, "", "fpr").value, fp / (fp + tn))
            assert_allclose(
                find(start, "quality", variant, "", "precision").value,
                precision_score(y_true, y_pred),
            )
            assert_allclose(
                find(start, "quality", variant, "", "recall").value, recall_score(y_true, y_pred)
            )
            negatives = int(tn + fp)
            if variant == "control":
                control_negatives = negatives
            else:  # compared with the control's labelled negatives: their count is stored
                fpr = find(start, "quality", variant, "", "fpr")
                assert (fpr.n_current, fpr.n_reference) == (negatives, control_negatives)
    # The shifted challenger flags more, so its FPR is worse than the control's: an alarm.
    assert find(last, "quality", "challenger", "", "fpr").is_alarm
    assert not find(DAY0, "quality", "challenger", "", "fpr").is_alarm

    alarms = latest_alarms(store, "fraud")
    assert {(a.kind, a.variant) for a in alarms} >= {
        ("prediction_drift", "challenger"),
        ("variant_skew", "challenger"),
    }
    assert all(a.window_start == last for a in alarms)

    # A second pass replaces the windows' results instead of adding to them.
    monitor_experiment(store, spec, MonitorOptions(), now=DAY0 + 3 * HOUR)
    assert len(monitor_history(store, "fraud")) == len(history)

    # The gauges hold the latest verdicts.
    metrics = MonitorMetrics()
    metrics.publish("fraud", history, now=DAY0 + 3 * HOUR)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    drift = {s.labels["variant"]: s.value for s in families["abflow_prediction_drift"].samples}
    assert_allclose(
        drift["challenger"], find(last, "prediction_drift", "challenger", "score").value
    )
    skew_gauge = {s.labels["feature"]: s.value for s in families["abflow_variant_skew"].samples}
    assert_allclose(skew_gauge["amount"], find(last, "variant_skew", "challenger", "amount").value)
    alarm = {
        (s.labels["kind"], s.labels["variant"]): s.value
        for s in families["abflow_monitor_alarm"].samples
    }
    assert alarm[("prediction_drift", "challenger")] == 1.0
    assert alarm[("prediction_drift", "control")] == 0.0


def test_a_pinned_reference_window_and_too_few_rows(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    spec = fraud_spec()
    with EventStore.open(f"sqlite:///{tmp_path / 'store.db'}", upgrade=True) as store:
        store.register_experiment(spec, actor="test")
        sampler = FeatureSampler(seed=12)
        serve_window(store, sampler, spec, DAY0, rng, shift={"challenger": 2.0})
        serve_window(store, sampler, spec, DAY0 + HOUR, rng, shift={"challenger": 2.0})
        serve_window(store, sampler, spec, DAY0 + 2 * HOUR, rng, shift={}, n=50)
        options = MonitorOptions(reference_window=DAY0 + HOUR)
        reports = monitor_experiment(store, spec, options, now=DAY0 + 3 * HOUR)
    # Against the pinned (shifted) window, the first shifted window does not drift ...
    first = {(r.kind, r.variant): r for r in reports[0].records if r.feature in ("score", "amount")}
    assert not first[("prediction_drift", "challenger")].is_alarm
    # ... and a window of 50 rows (min_samples 100) gets no verdict and no alarm.
    young = [r for r in reports[2].records if r.kind in ("feature_drift", "prediction_drift")]
    assert young
    assert all(r.value is None and not r.is_alarm for r in young)


def test_cli_once_exits_1_on_an_alarm_and_2_on_a_bad_reference(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from abflow.cli.main import app

    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = fraud_spec()
    with EventStore.open(url, upgrade=True) as store:
        store.register_experiment(spec, actor="test")
        sampler = FeatureSampler(seed=13)
        serve_window(store, sampler, spec, DAY0, rng, shift={})
        serve_window(store, sampler, spec, DAY0 + HOUR, rng, shift={"challenger": 1.5})
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", "fraud", "--once", "--store", url, "--format", "json"])
    assert result.exit_code == 1, result.output
    document = orjson.loads(result.stdout)
    last = document["windows"][-1]
    assert last["window_start"] == DAY0 + HOUR
    assert any(r["kind"] == "prediction_drift" and r["is_alarm"] for r in last["records"])
    # No model here has a training sample: drift is measured against the first window, skew
    # against the control's rows of the same window.
    references = {(r["kind"], r["reference"]) for r in last["records"] if r["kind"] != "quality"}
    assert {kind for kind, _ in references} >= {"prediction_drift", "feature_drift"}
    for kind, reference in references:
        assert reference == ("control" if kind == "variant_skew" else "window"), (kind, reference)
    for no_time in ("yesterday", "nan", "1e300"):
        bad = runner.invoke(
            app, ["monitor", "--once", "--store", url, "--reference-window", no_time]
        )
        assert bad.exit_code == 2, no_time
        assert f"--reference-window: {no_time!r} is" in bad.output
    # An experiment that cannot be monitored is named, exit 2; the others are still done.
    unknown = runner.invoke(app, ["monitor", "nope", "fraud", "--once", "--store", url])
    assert unknown.exit_code == 2
    assert "nope" in unknown.output
    assert "monitor of fraud" in unknown.output
