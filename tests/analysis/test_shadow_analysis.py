"""Shadow evaluation on a real store, checked against pandas/scipy/statsmodels on the raw rows.

The served champion answers every request; the challenger gets a shadow copy. It scores like
the champion everywhere but in one segment (country ``US``), where it pushes legitimate
transactions over the threshold: more false positives on exactly the same traffic.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analysis_support import START, Events, register, shadow_reference_pairs, write
from numpy.testing import assert_allclose
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from abflow.analysis import analyze
from abflow.rollout import GatePolicy, Requirement, evaluate_gate
from abflow.spec import parse_experiment

THRESHOLD = 0.5
SHADOW_SPEC: dict[str, Any] = {
    "key": "fraud",
    "variants": [
        {"name": "champion", "model": "models:/fraud@champion"},
        {"name": "challenger", "model": "models:/fraud@challenger"},
    ],
    "weights": [1.0, 0.0],
    "metrics": [
        {"name": "recall", "kind": "recall", "role": "primary"},
        {
            "name": "fpr",
            "kind": "false_positive_rate",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.1,
        },
        {"name": "errors", "kind": "error_rate", "role": "guardrail", "direction": "decrease"},
        {"name": "chargebacks", "kind": "conversion", "event": "chargeback", "role": "guardrail"},
    ],
    "analysis": {"alpha": 0.05},
}
PHASES = [{"phase": 1, "weights_json": "[1.0, 0.0]", "coverage": 1.0, "started_at": START}]


def simulate_shadow(
    rng: np.random.Generator,
    *,
    requests: int = 3000,
    us_shift: float = 0.3,
    shadow_error_rate: float = 0.02,
    shadow_noise: float = 0.05,
) -> Events:
    """Served and shadow predictions per request; the shadow adds ``us_shift`` to the score
    of US requests whose label is negative and fails ``shadow_error_rate`` of its calls (half
    of them timeouts). 90 % of requests get a label."""
    ids = itertools.count()
    events = Events()
    for r in range(requests):
        unit = f"u{r % 1200}"
        country = ["FR", "DE", "US"][int(rng.integers(3))]
        label = float(rng.random() < 0.2)
        ts = START + rng.uniform(0, 3 * 86400.0)
        served = float(np.clip(label * 0.5 + 0.25 + rng.normal(0, 0.15), 0, 1))
        shadow = served + rng.normal(0.0, shadow_noise)
        if country == "US" and not label:
            shadow += us_shift
        shadow = float(np.clip(shadow, 0, 1))
        request = f"r{r}"
        error = None
        draw = rng.random()
        if draw < shadow_error_rate / 2:
            error = "BackendTimeoutError: model challenger did not answer within 0.2 s"
        elif draw < shadow_error_rate:
            error = "BackendError: connection refused"
        for is_shadow, variant, score, latency, err in (
            (False, "champion", served, rng.gamma(4.0, 2.0), None),
            (True, "challenger", None if error else shadow, rng.gamma(4.0, 2.6), error),
        ):
            events.predictions.append(
                {
                    "event_id": f"p{next(ids)}",
                    "ts": ts + (0.01 if is_shadow else 0.0),
                    "request_id": request,
                    "experiment_key": "fraud",
                    "phase": 1,
                    "unit_id": unit,
                    "variant": variant,
                    "model_version": f"{variant}-v1",
                    "latency_ms": float(latency),
                    "is_fallback": False,
                    "is_shadow": is_shadow,
                    "score": score,
                    "error": err,
                    "country": country,
                }
            )
        if rng.random() < 0.9:
            events.outcomes.append(
                {
                    "event_id": f"o{next(ids)}",
                    "ts": ts + 86400.0,
                    "unit_id": unit,
                    "name": "label",
                    "value": label,
                    "request_id": request,
                    "experiment_key": "fraud",
                }
            )
    for r in range(1200):
        events.exposures.append(
            {
                "event_id": f"x{r}",
                "ts": START + r,
                "experiment_key": "fraud",
                "phase": 1,
                "unit_id": f"u{r}",
                "variant": "champion",
                "attributes_json": None,
            }
        )
    return events


def store_events(url: str, events: Events) -> None:
    write(url, events)
    register(url, parse_experiment(SHADOW_SPEC), PHASES)


@pytest.fixture(scope="module")
def harmful() -> Events:
    return simulate_shadow(np.random.default_rng(18))


def test_paired_figures_match_an_independent_computation(backend_url: str, harmful: Events) -> None:
    url = backend_url
    store_events(url, harmful)
    result = analyze(url, "fraud")
    assert [s.variant for s in result.shadow] == ["challenger"]
    shadow = result.shadow[0]
    ref = shadow_reference_pairs(harmful)
    scored = ref[ref.error_0.isna() & ref.error_1.isna()]
    assert shadow.pairs == len(ref) == 3000
    assert shadow.scored_pairs == len(scored)
    assert shadow.model_version == "challenger-v1"

    # decisions: agreement and McNemar on the discordant requests
    d0, d1 = scored.score_0 >= THRESHOLD, scored.score_1 >= THRESHOLD
    assert_allclose(shadow.agreement_rate, (d0 == d1).mean(), rtol=1e-12)
    table = pd.crosstab(d0, d1).to_numpy()
    positive = shadow.measure("positive_rate")
    assert_allclose(positive.p_value, sm_mcnemar(table, exact=False).pvalue, rtol=1e-9)

    # scores: paired t interval and quantiles of the difference
    diff = scored.score_1 - scored.score_0
    t = sps.ttest_rel(scored.score_1, scored.score_0)
    score = shadow.measure("score")
    assert_allclose(score.difference, diff.mean(), rtol=1e-9)
    assert_allclose([score.ci_low, score.ci_high], t.confidence_interval(0.95), rtol=1e-7)
    assert_allclose(score.served, scored.score_0.mean(), rtol=1e-9)
    for name, q in (("p5", 0.05), ("p50", 0.5), ("p95", 0.95)):
        assert abs(shadow.score_difference_quantiles[name] - np.quantile(diff, q)) < 0.011
    assert sum(n for _, n in shadow.score_difference_histogram) == len(scored)

    # latency side by side (0.25 ms bins)
    for got, column in (
        (shadow.served_latency_ms, "latency_ms_0"),
        (shadow.shadow_latency_ms, "latency_ms_1"),
    ):
        assert_allclose(got, np.quantile(ref[column], [0.5, 0.95, 0.99]), atol=0.3)

    # errors and timeouts
    errors = shadow.measure("error_rate")
    assert_allclose(errors.shadow, ref.error_1.notna().mean(), rtol=1e-12)
    assert errors.served == 0.0
    timeouts = shadow.measure("timeout_rate")
    assert_allclose(timeouts.shadow, ref.error_1.fillna("").str.contains("Timeout").mean())

    # counterfactual quality on the labelled requests, McNemar on correct/incorrect
    labelled = scored[scored.y.notna()]
    y = labelled.y >= 0.5
    p0, p1 = labelled.score_0 >= THRESHOLD, labelled.score_1 >= THRESHOLD
    assert shadow.labeled_pairs == len(labelled)
    negatives = ~y
    fpr = shadow.measure("false_positive_rate")
    assert_allclose([fpr.served, fpr.shadow], [p0[negatives].mean(), p1[negatives].mean()])
    fp_table = pd.crosstab(p0[negatives], p1[negatives]).to_numpy()
    assert_allclose(fpr.p_value, sm_mcnemar(fp_table, exact=False).pvalue, rtol=1e-9)
    paired = p1[negatives].astype(float) - p0[negatives].astype(float)
    fpr_t = sps.ttest_rel(p1[negatives].astype(float), p0[negatives].astype(float))
    assert_allclose([fpr.ci_low, fpr.ci_high], fpr_t.confidence_interval(0.95), rtol=1e-7)
    assert_allclose(fpr.difference, paired.mean())
    correct = sm_mcnemar(pd.crosstab(p0 == y, p1 == y).to_numpy(), exact=False)
    assert_allclose(shadow.measure("accuracy").p_value, correct.pvalue, rtol=1e-9)
    recall = shadow.measure("recall")
    assert_allclose([recall.served, recall.shadow], [p0[y].mean(), p1[y].mean()])
    precision = shadow.measure("precision")
    assert_allclose(precision.shadow, (p1 & y).sum() / p1.sum())
    brier = shadow.measure("brier_score")
    b0, b1 = (labelled.score_0 - labelled.y) ** 2, (labelled.score_1 - labelled.y) ** 2
    assert_allclose([brier.ci_low, brier.ci_high], sps.ttest_rel(b1, b0).confidence_interval(0.95))

    # the harm lives in one segment only: the shadow's false positives outside the US
    # match the champion's, and the overall increase is unmistakable
    us = labelled.country_0 == "US"
    assert abs(p1[negatives & ~us].mean() - p0[negatives & ~us].mean()) < 0.01
    assert fpr.ci_low > 0.05
    assert fpr.p_value < 1e-6


def test_gate_fails_a_harmful_shadow_and_passes_a_harmless_one(
    harmful: Events, tmp_path: Any
) -> None:
    """Same seed, same requests: only the US false positives differ between the two."""
    policy = GatePolicy(require=Requirement.shadow_no_harm)
    bad_url = f"sqlite:///{tmp_path / 'bad.db'}"
    store_events(bad_url, simulate_shadow(np.random.default_rng(18), shadow_error_rate=0.0))
    bad = evaluate_gate(analyze(bad_url, "fraud"), policy)
    failed = {(c.check, c.variant) for c in bad.failures}
    assert failed == {("shadow guardrail fpr", "challenger")}
    assert not bad.passed
    # a shadow that also fails 2 % of its calls fails the error guardrail too (margin 0)
    errors_url = f"sqlite:///{tmp_path / 'errors.db'}"
    store_events(errors_url, harmful)
    failed = {c.check for c in evaluate_gate(analyze(errors_url, "fraud"), policy).failures}
    assert failed == {"shadow guardrail fpr", "shadow guardrail errors"}

    good_url = f"sqlite:///{tmp_path / 'good.db'}"
    harmless = simulate_shadow(
        np.random.default_rng(18), us_shift=0.0, shadow_error_rate=0.0, shadow_noise=0.01
    )
    store_events(good_url, harmless)
    good = evaluate_gate(analyze(good_url, "fraud"), policy)
    assert good.passed, good.failures
    checks = {c.check: c.passed for c in good.checks}
    assert checks == {
        "shadow pairs": True,
        "shadow guardrail fpr": True,
        "shadow guardrail errors": True,
        "shadow guardrail chargebacks": True,
    }


def test_no_shadow_predictions_leave_the_gate_closed(harmful: Events, tmp_path: Any) -> None:
    served_only = Events(
        exposures=harmful.exposures,
        outcomes=harmful.outcomes,
        predictions=[p for p in harmful.predictions if not p["is_shadow"]],
    )
    url = f"sqlite:///{tmp_path / 'served.db'}"
    store_events(url, served_only)
    result = analyze(url, "fraud")
    assert result.shadow == []
    gate = evaluate_gate(result, GatePolicy(require=Requirement.shadow_no_harm))
    assert [(c.check, c.passed) for c in gate.checks] == [("shadow predictions", False)]
