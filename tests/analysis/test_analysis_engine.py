"""End-to-end analysis on SQLite against naive pandas/numpy/scipy computations of the same rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from analysis_support import SPEC, START, Events, register, simulate, write
from numpy.testing import assert_allclose
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from abflow.analysis import ExperimentResult, analyze
from abflow.analysis.engine import AnalysisOptions
from abflow.spec import ExperimentSpec, parse_experiment
from abflow.stats import CupedStats, SampleStats, compare

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:duckdb_engine")


def _phase_row(phase: int, start: float, end: float | None = None) -> dict[str, Any]:
    return {
        "phase": phase,
        "weights_json": "[0.5, 0.5]",
        "coverage": 1.0,
        "started_at": start,
        "ended_at": end,
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Events, ExperimentResult]:
    rng = np.random.default_rng(20261126)
    events = simulate(rng, units=2000)
    url = f"sqlite:///{tmp_path_factory.mktemp('analysis') / 'events.db'}"
    write(url, events)
    register(url, parse_experiment(SPEC), [_phase_row(1, START)])
    return url, events, analyze(url, "checkout", dimensions=["country"])


def _units(events: Events) -> pd.DataFrame:
    exposures, _, _ = events.frames()
    return exposures.groupby("unit_id").agg(variant=("variant", "first"), first_ts=("ts", "min"))


def _post_outcomes(events: Events, name: str) -> pd.DataFrame:
    _, outcomes, _ = events.frames()
    units = _units(events)
    joined = outcomes[outcomes["name"] == name].join(units, on="unit_id", how="inner")
    return joined[joined["ts"] >= joined["first_ts"]]


def _per_unit(events: Events, name: str, how: str) -> pd.DataFrame:
    units = _units(events)
    post = _post_outcomes(events, name)
    if how == "sum":
        values = post.groupby("unit_id")["value"].sum()
    elif how == "count":
        values = post.groupby("unit_id")["value"].count().astype(float)
    else:
        values = (post.groupby("unit_id")["value"].max() > 0).astype(float)
    units["x"] = values.reindex(units.index).fillna(0.0)
    return units


def _arm(units: pd.DataFrame, variant: str, column: str = "x") -> np.ndarray:
    return units.loc[units["variant"] == variant, column].to_numpy()


def test_revenue_matches_welch_t_test_on_per_unit_sums(dataset: Any) -> None:
    _, events, result = dataset
    units = _per_unit(events, "purchase", "sum")
    control, treatment = _arm(units, "control"), _arm(units, "treatment")
    metric = result.metric("revenue")
    assert [v.n for v in metric.values] == [control.size, treatment.size]
    assert_allclose([v.value for v in metric.values], [control.mean(), treatment.mean()])
    reference = sps.ttest_ind(treatment, control, equal_var=False)
    comparison = metric.comparisons[0]
    assert_allclose(comparison.effect, treatment.mean() - control.mean(), rtol=1e-9)
    assert_allclose(comparison.p_value, reference.pvalue, rtol=1e-6)
    interval = reference.confidence_interval(0.95)
    assert_allclose(
        [comparison.ci_low, comparison.ci_high], [interval.low, interval.high], rtol=1e-6
    )


def test_conversion_is_share_of_units_with_a_purchase(dataset: Any) -> None:
    _, events, result = dataset
    units = _per_unit(events, "purchase", "any")
    control, treatment = _arm(units, "control"), _arm(units, "treatment")
    metric = result.metric("converted")
    assert_allclose([v.value for v in metric.values], [control.mean(), treatment.mean()])
    expected = compare(
        SampleStats.proportion(control.size, control.sum()),
        SampleStats.proportion(treatment.size, treatment.sum()),
        relative=False,
    )
    assert_allclose(metric.comparisons[0].effect, expected.effect)
    assert_allclose(metric.comparisons[0].p_value, expected.p_value)


def _delta_method(m: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """Ratio of sums and its variance, written out from the textbook formula."""
    n = m.size
    ratio = m.sum() / d.sum()
    cov = np.cov(m, d, ddof=1)
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / d.mean() ** 2 / n
    return ratio, variance


def test_ratio_metric_uses_delta_method_clustered_by_unit(dataset: Any) -> None:
    _, events, result = dataset
    top = _per_unit(events, "purchase", "sum")
    bottom = _per_unit(events, "visit", "sum")
    arms = [_delta_method(_arm(top, v), _arm(bottom, v)) for v in ("control", "treatment")]
    metric = result.metric("per_visit")
    assert_allclose([v.value for v in metric.values], [arms[0][0], arms[1][0]])
    comparison = metric.comparisons[0]
    effect = arms[1][0] - arms[0][0]
    se = np.sqrt(arms[0][1] + arms[1][1])
    assert_allclose(comparison.effect, effect, rtol=1e-9)
    # Welch degrees of freedom are large here: the t interval is the normal one within 0.1 %.
    assert_allclose(comparison.ci_high - comparison.ci_low, 2 * 1.96 * se, rtol=2e-3)


def _prediction_frame(events: Events) -> pd.DataFrame:
    _, outcomes, predictions = events.frames()
    labels = outcomes[outcomes["name"] == "label"][["request_id", "value"]]
    frame = predictions.merge(labels, on="request_id", how="left")
    return frame[frame["value"].notna() & frame["score"].notna()]


def test_classifier_metrics_match_confusion_counts(dataset: Any) -> None:
    _, events, result = dataset
    frame = _prediction_frame(events)
    for variant_index, variant in enumerate(("control", "treatment")):
        arm = frame[frame["variant"] == variant]
        predicted = arm["score"] >= 0.5
        actual = arm["value"] >= 0.5
        tp = (predicted & actual).sum()
        expected = {
            "recall": tp / actual.sum(),
            "fpr": (predicted & ~actual).sum() / (~actual).sum(),
            "accuracy": (predicted == actual).mean(),
            "mae": (arm["score"] - arm["value"]).abs().mean(),
        }
        for name, value in expected.items():
            assert_allclose(result.metric(name).values[variant_index].value, value, rtol=1e-9)


def test_error_rate_cost_and_latency_quantile(dataset: Any) -> None:
    _, events, result = dataset
    _, _, predictions = events.frames()
    for index, variant in enumerate(("control", "treatment")):
        arm = predictions[predictions["variant"] == variant]
        errors = result.metric("errors").values[index].value
        assert_allclose(errors, arm["error"].notna().mean(), rtol=1e-9)
        cost_per_call = 2.0 / 1000 + arm["latency_ms"] / 1000 * 0.5
        assert_allclose(result.metric("cost").values[index].value, 1000 * cost_per_call.mean())
        p90 = result.metric("latency_p90").values[index].value
        assert abs(p90 - np.quantile(arm["latency_ms"], 0.9)) <= 0.25
        summary = result.latency[index]
        assert abs(summary.p50_ms - np.median(arm["latency_ms"])) <= 0.25


def test_srm_and_holm_match_scipy_and_statsmodels(dataset: Any) -> None:
    _, events, result = dataset
    counts = _units(events)["variant"].value_counts()
    observed = [counts["control"], counts["treatment"]]
    assert [v.units for v in result.variants] == observed
    assert_allclose(result.srm.p_value, sps.chisquare(observed).pvalue)
    tested = [m for m in result.metrics if m.role != "guardrail"]
    raw = [m.comparisons[0].p_value for m in tested]
    expected = multipletests(raw, method="holm")[1]
    assert_allclose([m.comparisons[0].adjusted_p_value for m in tested], expected)


def test_guardrail_failure_keeps_control(dataset: Any) -> None:
    _, _, result = dataset
    # the simulated treatment is noisier (more false positives) and slower
    assert result.metric("fpr").comparisons[0].guardrail == "fail"
    assert result.decision.verdict == "keep_control"
    assert "fpr" in result.decision.summary


def test_breakdown_by_country_matches_groupby(dataset: Any) -> None:
    _, events, result = dataset
    units = _per_unit(events, "purchase", "sum")
    exposures, _, _ = events.frames()
    attributes = exposures.groupby("unit_id")["attributes_json"].first()
    units["country"] = attributes.map(lambda text: orjson.loads(text)["country"])
    rows = [r for r in result.breakdowns if r.metric == "revenue"]
    assert sorted(r.value for r in rows) == ["DE", "FR", "US"]
    for row in rows:
        segment = units[units["country"] == row.value]
        control, treatment = _arm(segment, "control"), _arm(segment, "treatment")
        assert (row.control_units, row.treatment_units) == (control.size, treatment.size)
        assert_allclose(row.effect, treatment.mean() - control.mean(), rtol=1e-9)
        assert_allclose(row.p_value, sps.ttest_ind(treatment, control, equal_var=False).pvalue)


def test_timeline_ends_at_the_overall_effect(dataset: Any) -> None:
    _, _, result = dataset
    metric = result.metric("revenue")
    assert len(metric.timeline) >= 4
    last = metric.timeline[-1]
    assert_allclose(last.effect, metric.comparisons[0].effect)
    assert last.units == sum(v.n for v in metric.values)
    days = [point.day for point in metric.timeline]
    assert days == sorted(days)


def test_provenance_and_json(dataset: Any) -> None:
    url, events, result = dataset
    data = result.to_dict()
    assert data["schema_version"] == 1
    provenance = data["provenance"]
    assert provenance["spec_version"] == 1
    assert len(provenance["spec_hash"]) == 64
    assert provenance["rows"]["units"] == len(_units(events))
    assert provenance["window_start"] == START
    assert provenance["window_end"] == pytest.approx(_units(events)["first_ts"].max())
    assert data["metrics"][0]["name"] == "converted"
    assert url


def test_phases_are_never_mixed(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    first = simulate(rng, units=600, phase=1)
    # phase 2 re-uses the same unit ids, with a large lift, well after phase 1 ended (its
    # pre-period outcomes reach five days back, still after the end of phase 1)
    second = simulate(rng, units=600, phase=2, start=START + 20 * 86400, lift=0.5)
    url = f"sqlite:///{tmp_path / 'phases.db'}"
    write(url, first)
    write(url, second)
    register(
        url,
        parse_experiment(SPEC),
        [_phase_row(1, START, START + 9 * 86400), _phase_row(2, START + 20 * 86400)],
    )
    only_first = tmp_path / "first.db"
    write(f"sqlite:///{only_first}", first)
    register(
        f"sqlite:///{only_first}", parse_experiment(SPEC), [_phase_row(1, START, START + 9 * 86400)]
    )

    mixed_store = analyze(url, "checkout", AnalysisOptions(phase=1))
    alone = analyze(f"sqlite:///{only_first}", "checkout")
    for metric in ("converted", "revenue", "per_visit", "recall"):
        assert_allclose(
            [v.value for v in mixed_store.metric(metric).values],
            [v.value for v in alone.metric(metric).values],
        )
    latest = analyze(url, "checkout")
    assert latest.phase == 2
    assert latest.phases == [1, 2]
    assert latest.provenance.rows["units"] == 600
    units = _per_unit(second, "purchase", "any")
    assert_allclose(latest.metric("converted").values[1].value, _arm(units, "treatment").mean())


def _exposures_only(rng: np.random.Generator, units: int, split: float) -> Events:
    treated = rng.random(units) < split
    rows = [
        {"event_id": f"e{u}", "ts": START + u, "experiment_key": "checkout", "phase": 1,
         "unit_id": f"u{u}", "variant": "treatment" if t else "control"}
        for u, t in enumerate(treated)
    ]  # fmt: skip
    return Events(exposures=rows)


def test_seeded_sample_ratio_mismatch_is_caught(tmp_path: Path) -> None:
    broken = f"sqlite:///{tmp_path / 'srm.db'}"
    write(broken, _exposures_only(np.random.default_rng(11), 20_000, split=0.52))
    register(broken, parse_experiment(SPEC), [_phase_row(1, START)])
    result = analyze(broken, "checkout")
    assert result.srm.is_mismatch
    assert result.decision.verdict == "invalid"
    healthy = f"sqlite:///{tmp_path / 'ok.db'}"
    write(healthy, _exposures_only(np.random.default_rng(12), 20_000, split=0.5))
    register(healthy, parse_experiment(SPEC), [_phase_row(1, START)])
    assert not analyze(healthy, "checkout").srm.is_mismatch


def test_cuped_matches_stats_on_per_unit_values(tmp_path: Path) -> None:
    data = dict(SPEC)
    data["metrics"] = [{"name": "revenue", "kind": "sum", "event": "purchase", "role": "primary"}]
    data["analysis"] = {"cuped": True, "relative": True, "method": "sequential"}
    spec: ExperimentSpec = parse_experiment(data)
    events = simulate(np.random.default_rng(5), units=1500)
    url = f"sqlite:///{tmp_path / 'cuped.db'}"
    write(url, events)
    register(url, spec, [_phase_row(1, START)])
    result = analyze(url, spec)
    post = _per_unit(events, "purchase", "sum")
    _, outcomes, _ = events.frames()
    units = _units(events)
    joined = outcomes[outcomes["name"] == "purchase"].join(units, on="unit_id", how="inner")
    pre = joined[joined["ts"] < joined["first_ts"]].groupby("unit_id")["value"].sum()
    post["pre"] = pre.reindex(post.index).fillna(0.0)
    arms = [
        CupedStats.from_values(_arm(post, v), _arm(post, v, "pre"))
        for v in ("control", "treatment")
    ]
    expected = compare(arms[0], arms[1], method="sequential", relative=True)
    comparison = result.metric("revenue").comparisons[0]
    assert result.metric("revenue").cuped
    assert_allclose(
        [comparison.effect, comparison.ci_low, comparison.ci_high, comparison.p_value],
        [expected.effect, expected.ci_low, expected.ci_high, expected.p_value],
    )


def test_units_seen_in_two_variants_are_left_out_and_reported(tmp_path: Path) -> None:
    events = _exposures_only(np.random.default_rng(13), 1000, split=0.5)
    leaked = dict(events.exposures[0], event_id="leak", ts=START + 5000.0)
    leaked["variant"] = "control" if leaked["variant"] == "treatment" else "treatment"
    events.exposures.append(leaked)
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    write(url, events)
    register(url, parse_experiment(SPEC), [_phase_row(1, START)])
    for rollups in (False, True):
        result = analyze(url, "checkout", AnalysisOptions(rollups=rollups))
        assert result.mixed_units == 1
        assert sum(v.units for v in result.variants) == 999
        assert any("more than one variant" in w for w in result.warnings)


def test_a_unit_exposed_to_two_variants_is_left_out_of_prediction_metrics_too(
    tmp_path: Path,
) -> None:
    """Its predictions, served by both variants, counted in each arm's error rate and
    latency while the unit metrics left it out: one unit landed in both arms."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    spec = parse_experiment(
        {
            "key": "k",
            "variants": [
                {"name": "control", "model": "models:/m@a"},
                {"name": "t", "model": "models:/m@b"},
            ],
            "metrics": [
                {"name": "conv", "kind": "conversion", "event": "buy", "role": "primary"},
                {"name": "errors", "kind": "error_rate"},
                {"name": "p90", "kind": "latency", "quantile": 0.9},
            ],
        }
    )
    events = Events()
    for i in range(40):
        variant = ["control", "t"][i % 2]
        events.exposures.append(
            {"event_id": f"e{i}", "ts": START + i, "experiment_key": "k", "phase": 1,
             "unit_id": f"u{i}", "variant": variant, "attributes_json": None}
        )  # fmt: skip
        events.predictions.append(
            {"event_id": f"p{i}", "ts": START + 200, "request_id": f"r{i}",
             "experiment_key": "k", "phase": 1, "unit_id": f"u{i}", "variant": variant,
             "model_version": variant, "latency_ms": 5.0, "score": None, "error": None,
             "is_fallback": False, "is_shadow": False}
        )  # fmt: skip
    events.exposures.append(  # u0, a control unit, is also exposed to t
        {"event_id": "mix", "ts": START + 100, "experiment_key": "k", "phase": 1,
         "unit_id": "u0", "variant": "t", "attributes_json": None}
    )  # fmt: skip
    for i, variant in enumerate(("control", "t") * 10):  # u0 fails slowly in both arms
        events.predictions.append(
            {"event_id": f"x{i}", "ts": START + 300, "request_id": f"x{i}",
             "experiment_key": "k", "phase": 1, "unit_id": "u0", "variant": variant,
             "model_version": variant, "latency_ms": 900.0, "score": None, "error": "boom",
             "is_fallback": False, "is_shadow": False}
        )  # fmt: skip
    write(url, events)
    register(url, spec, [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0,
                         "started_at": START}])  # fmt: skip
    result = analyze(url, "k")
    assert result.mixed_units == 1
    assert [v.n for v in result.metric("conv").values] == [19, 20]
    assert [v.n for v in result.metric("errors").values] == [19, 20]
    assert [v.value for v in result.metric("errors").values] == [0.0, 0.0]
    assert [v.value for v in result.metric("p90").values] == pytest.approx([5.0, 5.0], abs=0.25)
