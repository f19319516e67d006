"""Analysis shows the monitor's drift over time, flags train/serve skew, and proves from the
monitoring samples that each model saw the features its predictions logged.

References are built here, apart from the code under test: the features hash is recomputed
with hashlib over the encoding :func:`abflow.features.feature_vector_hash` documents, the
counts come from the hand-built rows, and the expected verdicts from the records written.
"""

from __future__ import annotations

import hashlib
import html
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from analysis_support import SPEC, START, Events, register, simulate, write

from abflow.analysis import (
    ExperimentResult,
    analyze,
    render_html,
    render_json,
    render_markdown,
    render_table,
)
from abflow.analysis.drift_timeline import NO_DATA, drift_alarms, drift_charts, drift_message
from abflow.dashboard.monitoring import monitoring_view
from abflow.spec import parse_experiment
from abflow.store import EventStore
from abflow.store.monitoring import MonitorRecord, save_monitor_results
from abflow.store.schema import feature_samples, metadata, monitor_results

HOUR = 3600.0
NAMES = ["amount", "age"]
SAMPLED = 40
"""Sampled served requests per variant."""


def reference_hash(names: Sequence[str], values: Sequence[float]) -> str:
    """SHA-256 of the documented encoding: a tag, the count, then each length-prefixed UTF-8
    name and its value as ``b"f"`` + IEEE-754 big-endian double."""
    parts = [b"abflow-features-v1", struct.pack(">I", len(names))]
    for name, value in zip(names, values, strict=True):
        encoded = name.encode()
        parts += [struct.pack(">I", len(encoded)), encoded, b"f", struct.pack(">d", value)]
    return hashlib.sha256(b"".join(parts)).hexdigest()


def with_samples(events: Events, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Give the first served predictions of each variant a features hash and a sample.

    Control: two samples whose prediction logged no hash, three whose hash is of another
    vector, five hashed under the spec's feature names; treatment: all positional, one
    mismatch. A shadow prediction of a sampled request carries a different hash (it must
    not count), and one sample has no prediction at all.
    """
    samples = []
    shadows = []
    for variant in ("control", "treatment"):
        served = [p for p in events.predictions if p["variant"] == variant and not p["is_shadow"]][
            :SAMPLED
        ]
        for i, prediction in enumerate(served):
            row = rng.normal(size=2).tolist()
            logged: str | None = reference_hash(["0", "1"], row)
            if variant == "control" and i < 2:
                logged = None
            elif (variant == "control" and i < 5) or (variant == "treatment" and i == 7):
                logged = reference_hash(["0", "1"], [row[0] + 1.0, row[1]])
            elif variant == "control" and i < 10:
                logged = reference_hash(NAMES, row)
            prediction["features_hash"] = logged
            samples.append(sample_row(prediction, row))
            if i == 0:
                shadows.append(
                    {
                        **prediction,
                        "event_id": prediction["event_id"] + "s",
                        "variant": "shadow",
                        "is_shadow": True,
                        "features_hash": "0" * 64,
                    }
                )
    orphan = {**samples[-1], "event_id": "orphan", "request_id": "no-such-request"}
    events.predictions.extend(shadows)
    return [*samples, orphan]


def sample_row(prediction: dict[str, Any], row: list[float]) -> dict[str, Any]:
    return {
        "event_id": "s" + prediction["event_id"],
        "ts": prediction["ts"],
        "request_id": prediction["request_id"],
        "experiment_key": prediction["experiment_key"],
        "phase": prediction["phase"],
        "variant": prediction["variant"],
        "model_version": prediction["model_version"],
        "window_start": prediction["ts"] - prediction["ts"] % HOUR,
        "priority": 0.5,
        "features_json": orjson.dumps(row).decode(),
        "score": prediction["score"],
    }


def record(
    window: int, variant: str, kind: str, feature: str, value: float | None, **extra: Any
) -> MonitorRecord:
    threshold = extra.pop("threshold", 0.2)
    return MonitorRecord(
        experiment_key="checkout",
        window_start=START + window * HOUR,
        window_end=START + (window + 1) * HOUR,
        kind=kind,
        variant=variant,
        feature=feature,
        method="psi",
        value=value,
        p_value=None,
        threshold=threshold,
        is_alarm=value is not None and value > threshold,
        n_reference=500,
        n_current=300,
        **extra,
    )


HISTORY = [
    record(-5, "treatment", "feature_drift", "amount", 0.9, reference="training"),  # before
    *[
        record(w, "control", "feature_drift", "amount", v, reference="window")
        for w, v in enumerate([0.01, 0.02, 0.03, 0.25])
    ],
    *[
        record(w, "treatment", "feature_drift", "amount", v, reference="training")
        for w, v in enumerate([0.05, 0.1, 0.3, 0.35])
    ],
    *[
        record(w, "treatment", "feature_drift", "age", v, reference="training")
        for w, v in enumerate([0.3, 0.05, 0.04, None])
    ],
    *[
        record(w, "treatment", "prediction_drift", "score", v, reference="window")
        for w, v in enumerate([0.02, 0.04, 0.1, 0.4])
    ],
]
"""Latest verdicts: control amount 0.25 (alarm, against a window), treatment amount 0.35
(alarm, against training data: the one skew), treatment age 0.04 in window 2 (no alarm; window
3 had too few rows), treatment scores 0.4 (alarm, prediction drift: not skew)."""


@pytest.fixture(scope="module")
def monitored(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ExperimentResult, Events, list[Any]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('drift') / 'events.db'}"
    events = simulate(np.random.default_rng(5), units=300)
    samples = with_samples(events, np.random.default_rng(6))
    write(url, events)
    spec = parse_experiment({**SPEC, "monitoring": {"features": NAMES}})
    phases = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]
    register(url, spec, phases)
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine, tables=[feature_samples, monitor_results])
        with engine.begin() as connection:
            connection.execute(sa.insert(feature_samples), samples)
        for start in sorted({r.window_start for r in HISTORY}):
            rows = [r for r in HISTORY if r.window_start == start]
            save_monitor_results(engine, "checkout", start, rows, now=START)
    finally:
        engine.dispose()
    return analyze(url, "checkout"), events, samples


def expected_identity(samples: list[Any], predictions: list[Any]) -> dict[str, tuple[int, ...]]:
    """Per variant (samples joined, compared, identical), counted from the rows."""
    served = {
        (p["request_id"], p["variant"]): p["features_hash"]
        for p in predictions
        if not p["is_shadow"]
    }
    counts: dict[str, list[int]] = {}
    for s in samples:
        key = (s["request_id"], s["variant"])
        if key not in served:
            continue
        tally = counts.setdefault(s["variant"], [0, 0, 0])
        tally[0] += 1
        logged = served[key]
        if logged is not None:
            row = orjson.loads(s["features_json"])
            tally[1] += 1
            tally[2] += logged in {reference_hash(["0", "1"], row), reference_hash(NAMES, row)}
    return {variant: tuple(tally) for variant, tally in counts.items()}


def test_identical_features_are_counted_from_the_samples() -> None:
    events = simulate(np.random.default_rng(5), units=300)
    samples = with_samples(events, np.random.default_rng(6))
    expected = expected_identity(samples, events.predictions)
    # The fixture's design, as a check on the reference itself: 2 unhashed and 3 wrong in
    # the control, 1 wrong in the treatment.
    assert expected == {"control": (40, 38, 35), "treatment": (40, 40, 39)}


def test_result_carries_the_sampled_share_in_every_output(monitored: Any) -> None:
    result, events, samples = monitored
    expected = expected_identity(samples, events.predictions)
    found = {s.variant: (s.samples, s.compared, s.identical) for s in result.sampled_features}
    assert found == expected
    control = expected["control"]
    line = f"identical on {control[2] / control[1]:.1%} of {control[1]:,} sampled requests"
    data = orjson.loads(render_json(result))
    by_variant = {s["variant"]: s for s in data["sampled_features"]}
    assert by_variant["control"]["share"] == pytest.approx(control[2] / control[1])
    page = html.unescape(render_html(result))
    for text in (render_table(result, width=200), render_markdown(result), page):
        assert line in text
    mismatch = f"differ from the logged features hash on {control[1] - control[2]:,} of"
    assert any(mismatch in w and "variant control" in w for w in result.warnings)


def test_train_serve_skew_is_flagged_only_for_training_reference_alarms(monitored: Any) -> None:
    result, _, _ = monitored
    summary = result.monitoring
    assert summary is not None
    assert summary.windows == 4  # the window before the phase is left out
    assert summary.alarms == sum(r.is_alarm for r in HISTORY if r.window_start >= START)
    latest = {(r.variant, r.kind, r.feature): (r.window_start, r.value) for r in summary.latest}
    assert latest[("treatment", "feature_drift", "age")] == (START + 2 * HOUR, 0.04)
    assert latest[("treatment", "feature_drift", "amount")] == (START + 3 * HOUR, 0.35)
    assert len(summary.train_serve_skew) == 1
    flag = summary.train_serve_skew[0]
    assert flag.startswith(
        "train/serve skew: feature 'amount' of variant 'treatment' differs from its training "
        f"data (psi {0.35:.4f}, threshold 0.2)"
    )
    data = orjson.loads(render_json(result))
    assert "history" not in data["monitoring"]
    assert data["monitoring"]["train_serve_skew"] == [flag]
    latest_json = {(r["variant"], r["feature"], r["kind"]) for r in data["monitoring"]["latest"]}
    assert ("treatment", "age", "feature_drift") in latest_json
    page = html.unescape(render_html(result))
    for text in (render_table(result, width=300), render_markdown(result), page):
        assert "train/serve skew: feature 'amount' of variant 'treatment'" in text
        assert "of variant 'control'" not in text
        assert "feature 'age'" not in text


def test_html_report_draws_drift_over_time(monitored: Any) -> None:
    result, _, _ = monitored
    page = render_html(result)
    section = page[page.index('<h2 id="drift">Drift over time</h2>') :]
    kept = [r for r in HISTORY if r.window_start >= START]
    assert drift_message(kept) in section
    assert "4 monitoring windows" in section
    for title in ("feature drift of amount (psi)", "feature drift of age (psi)"):
        assert f"<h3>{title}</h3>" in section
    assert "treatment (vs training data)" in section
    for alarm in drift_alarms(kept):
        assert f">{alarm['value']}</td>" in section
    assert f">{0.35:.4f}</td>" in section
    assert section.count("<svg") == len(drift_charts(kept)) == 3


def test_report_says_when_the_monitor_has_not_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    write(url, simulate(np.random.default_rng(7), units=100))
    phases = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]
    register(url, parse_experiment(SPEC), phases)
    result = analyze(url, "checkout")
    assert result.monitoring is None
    assert result.sampled_features == []
    page = html.unescape(render_html(result))
    assert f'<h2 id="drift">Drift over time</h2><p>{NO_DATA}</p>' in page
    assert orjson.loads(render_json(result))["monitoring"] is None


def test_dashboard_panel_shows_the_same_charts(tmp_path: Path) -> None:
    kept = sorted(
        (r for r in HISTORY if r.window_start >= START),
        key=lambda r: (r.window_start, r.kind, r.variant, r.feature, r.method),
    )  # as the store returns them
    with EventStore.open(f"sqlite:///{tmp_path / 'store.db'}", upgrade=True) as store:
        assert monitoring_view(store, "checkout") == {
            "message": NO_DATA,
            "charts": [],
            "alarms": [],
        }
        for start in sorted({r.window_start for r in kept}):
            save_monitor_results(
                store, "checkout", start, [r for r in kept if r.window_start == start]
            )
        view = monitoring_view(store, "checkout")
    assert view["message"] == drift_message(kept)
    assert [c["title"] for c in view["charts"]] == [title for title, _ in drift_charts(kept)]
    assert [c["svg"] for c in view["charts"]] == [str(svg) for _, svg in drift_charts(kept)]
    assert view["alarms"] == drift_alarms(kept)
    assert len(view["alarms"]) == sum(r.is_alarm for r in kept)
