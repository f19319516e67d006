"""Shadow evaluation broken down by an exposure attribute, and the shadow share.

The challenger scores like the champion everywhere but in one country (``US``), where it
pushes legitimate transactions over the threshold. Overall, the harm is diluted; per
segment it is plain, and the other segments stay clean after the multiple-testing
correction. Every figure is recomputed from the exported rows with pandas, scipy
(``binomtest`` on the discordant pairs, ``chi2`` for the large-sample McNemar, ``ttest_rel``)
and statsmodels' Holm correction.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from analysis_support import START, Events, register, shadow_reference_pairs, write
from numpy.testing import assert_allclose
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from abflow.analysis import AnalysisOptions, analyze
from abflow.spec import parse_experiment

THRESHOLD = 0.5
COUNTRIES = ("DE", "FR", "US")
SPEC: dict[str, Any] = {
    "key": "fraud",
    "variants": [
        {"name": "champion", "model": "models:/fraud@champion"},
        {"name": "challenger", "model": "models:/fraud@challenger"},
    ],
    "weights": [1.0, 0.0],
    "metrics": [
        {
            "name": "fpr",
            "kind": "false_positive_rate",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.1,
        },
    ],
    "shadow": {"variants": ["challenger"], "share": 0.5},
}
PHASES = [{"phase": 1, "weights_json": "[1.0, 0.0]", "coverage": 1.0, "started_at": START}]


def simulate(rng: np.random.Generator, *, units: int = 900, requests: int = 4000) -> Events:
    """Units with a fixed country (60 of them never exposed); half the requests mirrored."""
    ids = itertools.count()
    events = Events()
    country = {f"u{u}": COUNTRIES[u % 3] for u in range(units)}
    for u in range(units - 60):
        events.exposures.append(
            {"event_id": f"x{u}", "ts": START + u, "experiment_key": "fraud", "phase": 1,
             "unit_id": f"u{u}", "variant": "champion",
             "attributes_json": orjson.dumps({"country": country[f"u{u}"]}).decode()}
        )  # fmt: skip
    for r in range(requests):
        unit = f"u{int(rng.integers(units))}"
        label = float(rng.random() < 0.25)
        ts = START + 3600 + rng.uniform(0, 86400.0)
        served = float(np.clip(0.5 * label + 0.25 + rng.normal(0, 0.15), 0, 1))
        shadow = served + rng.normal(0.0, 0.02)
        if country[unit] == "US" and not label:
            shadow += 0.25
        rows = [(False, "champion", served)]
        if r % 2 == 0:  # the sampled half: the others were never mirrored
            rows.append((True, "challenger", float(np.clip(shadow, 0, 1))))
        for is_shadow, variant, score in rows:
            events.predictions.append(
                {"event_id": f"p{next(ids)}", "ts": ts, "request_id": f"r{r}",
                 "experiment_key": "fraud", "phase": 1, "unit_id": unit, "variant": variant,
                 "model_version": variant, "latency_ms": float(rng.gamma(4.0, 2.0)),
                 "is_fallback": False, "is_shadow": is_shadow, "score": score, "error": None}
            )  # fmt: skip
        events.outcomes.append(
            {"event_id": f"o{next(ids)}", "ts": ts + 86400.0, "unit_id": unit, "name": "label",
             "value": label, "request_id": f"r{r}", "experiment_key": "fraud"}
        )  # fmt: skip
    return events


def reference_pairs(events: Events) -> pd.DataFrame:
    """One row per mirrored request: both scores, the label and the unit's country."""
    pairs = shadow_reference_pairs(events)
    exposures = pd.DataFrame(events.exposures)
    exposures["country"] = [orjson.loads(a)["country"] for a in exposures.attributes_json]
    country = exposures.groupby("unit_id")["country"].min()
    pairs["country"] = pairs.unit_id_0.map(country)
    return pairs


def mcnemar_p(before: pd.Series, after: pd.Series) -> float:
    """Exact (binomtest on the discordant pairs) below 25 of them, else chi-square with
    continuity correction."""
    b = int((before & ~after).sum())
    c = int((~before & after).sum())
    if b + c == 0:
        return 1.0
    if b + c < 25:
        return float(sps.binomtest(b, b + c, 0.5).pvalue)
    return float(sps.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1))


@pytest.fixture(scope="module")
def events() -> Events:
    return simulate(np.random.default_rng(7))


def test_segments_match_an_independent_computation(backend_url: str, events: Events) -> None:
    url = backend_url
    write(url, events)
    register(url, parse_experiment(SPEC), PHASES)
    result = analyze(url, "fraud", AnalysisOptions(shadow_segment="country"))
    (shadow,) = result.shadow
    ref = reference_pairs(events)

    # the share: only the sampled half is paired, and the report says how much that is
    assert shadow.pairs == len(ref) == 2000
    assert shadow.served_requests == 4000
    assert shadow.share == 0.5

    segments = {s.value: s for s in shadow.segments}
    assert list(segments) == [*COUNTRIES, None]
    groups = dict(iter(ref.groupby(ref.country.fillna("(none)"))))
    fpr_p = {}
    for value, segment in segments.items():
        rows = groups[value or "(none)"]
        assert segment.attribute == "country"
        assert segment.pairs == len(rows)
        negatives = rows[rows.y < 0.5]
        p0, p1 = negatives.score_0 >= THRESHOLD, negatives.score_1 >= THRESHOLD
        fpr = next(m for m in segment.measures if m.name == "false_positive_rate")
        assert fpr.n == len(negatives)
        assert_allclose([fpr.served, fpr.shadow], [p0.mean(), p1.mean()], rtol=1e-12)
        assert_allclose(fpr.p_value, mcnemar_p(p0, p1), rtol=1e-9)
        low, high = sps.ttest_rel(p1.astype(float), p0.astype(float)).confidence_interval(0.95)
        assert_allclose([fpr.ci_low, fpr.ci_high], [low, high], rtol=1e-7, atol=1e-12)
        score = next(m for m in segment.measures if m.name == "score")
        t = sps.ttest_rel(rows.score_1, rows.score_0)
        assert_allclose(score.p_value, t.pvalue, rtol=1e-6)
        assert_allclose(score.difference, (rows.score_1 - rows.score_0).mean(), rtol=1e-9)
        fpr_p[value] = fpr
    # Holm across the four segments, per measure
    holm = multipletests([fpr_p[v].p_value for v in segments], method="holm")[1]
    assert_allclose([fpr_p[v].p_adjusted for v in segments], holm, rtol=1e-12)

    # the harm is in the US only, and it survives the correction; the rest stays clean
    assert fpr_p["US"].p_adjusted < 1e-6
    assert fpr_p["US"].ci_low > 0.2
    for value in ("DE", "FR"):
        assert fpr_p[value].p_adjusted > 0.05
        assert abs(fpr_p[value].difference) < 0.02


def test_cli_segment_breakdown_and_bad_attribute(events: Events, tmp_path: Path) -> None:
    from abflow.cli.main import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    write(url, events)
    register(url, parse_experiment(SPEC), PHASES)
    runner = CliRunner()
    args = ["analyze", "fraud", "--store", url, "--segment", "country"]
    done = runner.invoke(app, [*args, "--format", "json"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    data = orjson.loads(done.output)
    segments = data["shadow"][0]["segments"]
    assert [s["value"] for s in segments] == ["DE", "FR", "US", None]
    markdown = runner.invoke(app, [*args, "--format", "markdown"], env={"COLUMNS": "200"})
    assert markdown.exit_code == 0, markdown.output
    us_row = next(
        line for line in markdown.output.splitlines() if "false_positive_rate · country=US" in line
    )
    assert "adjusted" in us_row
    assert "2,000 requests of 4,000 served (50.00%; share 0.5)" in markdown.output


def test_cli_refuses_a_segment_that_is_not_an_attribute_name(
    events: Events, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from abflow.cli.main import main

    url = f"sqlite:///{tmp_path / 'bad.db'}"
    write(url, events)
    register(url, parse_experiment(SPEC), PHASES)
    with pytest.raises(SystemExit) as done:
        main(["analyze", "fraud", "--store", url, "--segment", "coun try"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "segment: 'coun try' is not an attribute name" in " ".join(err.split())
    assert "Traceback" not in err
