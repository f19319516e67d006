"""Post-stratification in ``abflow analyze`` (issue #14, item 9): a metric with
``post_stratify: [country, platform]`` is compared within the cells of those exposure
attributes. Checked end to end, on SQLite and PostgreSQL, against references computed from
the raw rows with pandas: statsmodels' OLS with cell indicators interacted with the arm
(Lin's regression adjustment) for means and proportions, the weighted cell ratios and their
delta-method variance for ratios, and the plain comparison for the single-cell fallback."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import statsmodels.api as sm
from analysis_support import DAY, START, VARIANTS, Events, register, write
from scipy import special

from abflow.analysis import AnalysisOptions, ExperimentResult, analyze
from abflow.errors import InvalidSpecError
from abflow.spec import parse_experiment

CELLS = [("FR", "ios"), ("FR", "web"), ("DE", "ios"), ("DE", "web"), ("US", "ios"), ("US", "web")]
CELL_SHARE = [0.3, 0.2, 0.15, 0.1, 0.15, 0.1]  # FR/ios is the largest cell
CELL_SPEND = [5.0, 8.0, 12.0, 20.0, 30.0, 45.0]  # spend differs a lot between cells
STRATIFIED = ["country", "platform"]
SPEC: dict[str, Any] = {
    "key": "strata",
    "variants": VARIANTS,
    "metrics": [
        {
            "name": "revenue",
            "kind": "sum",
            "event": "purchase",
            "role": "primary",
            "post_stratify": STRATIFIED,
        },
        {
            "name": "converted",
            "kind": "conversion",
            "event": "purchase",
            "post_stratify": STRATIFIED,
        },
        {
            "name": "per_visit",
            "kind": "ratio",
            "numerator": "purchase",
            "denominator": "visit",
            "post_stratify": STRATIFIED,
        },
        {"name": "revenue_plain", "kind": "sum", "event": "purchase"},
        {"name": "revenue_one_cell", "kind": "sum", "event": "purchase", "post_stratify": ["app"]},
    ],
    "analysis": {"relative": False, "correction": "none", "cuped": True},
}
PHASES = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]


def _simulate(rng: np.random.Generator, units: int = 1500) -> Events:
    """Units in six country x platform cells (and one in Luxembourg, a cell too thin to keep)."""
    ids = itertools.count()
    events = Events()
    cells = rng.choice(len(CELLS), units, p=CELL_SHARE)
    for u in range(units + 1):
        unit = f"u{u}"
        thin = u == units
        treated = False if thin else bool(rng.random() < 0.5)
        country, platform = ("LU", "web") if thin else CELLS[cells[u]]
        spend = 100.0 if thin else CELL_SPEND[cells[u]]
        first = START + rng.uniform(0, 3 * DAY)
        attributes = {"country": country, "platform": platform, "app": "shop"}
        for k in range(int(rng.integers(1, 3))):
            events.exposures.append(
                {
                    "event_id": f"e{next(ids)}",
                    "ts": first + k * 300.0,
                    "experiment_key": "strata",
                    "phase": 1,
                    "unit_id": unit,
                    "variant": "treatment" if treated else "control",
                    "attributes_json": orjson.dumps(attributes).decode(),
                }
            )
        visits = int(rng.integers(1, 5))
        for _ in range(visits):
            events.outcomes.append(
                {
                    "event_id": f"o{next(ids)}",
                    "ts": first + rng.uniform(1, DAY),
                    "unit_id": unit,
                    "name": "visit",
                    "value": 1.0,
                }
            )
        rate = min(0.2 + spend / 100.0, 0.9)
        for _ in range(int(rng.binomial(visits, rate))):
            events.outcomes.append(
                {
                    "event_id": f"o{next(ids)}",
                    "ts": first + rng.uniform(1, DAY),
                    "unit_id": unit,
                    "name": "purchase",
                    "value": float(rng.normal(spend * (1.04 if treated else 1.0), 2.0)),
                }
            )
    return events


def _per_unit(events: Events) -> pd.DataFrame:
    """Per-unit values and cell from the raw rows; the thin Luxembourg cell joins the largest."""
    exposures = pd.DataFrame(events.exposures)
    attributes = exposures.attributes_json.map(orjson.loads)
    exposures["cell"] = attributes.map(lambda a: f"{a['country']}/{a['platform']}")
    units = exposures.groupby("unit_id").agg(
        variant=("variant", "first"), first=("ts", "min"), cell=("cell", "first")
    )
    units["cell"] = units.cell.replace({"LU/web": "FR/ios"})
    outcomes = pd.DataFrame(events.outcomes).merge(units, left_on="unit_id", right_index=True)
    after = outcomes[outcomes.ts >= outcomes["first"]]
    for name in ("purchase", "visit"):
        rows = after[after.name == name]
        units[name] = rows.groupby("unit_id").value.sum().reindex(units.index, fill_value=0.0)
        units[f"{name}_any"] = (rows[rows.value > 0].groupby("unit_id").size() > 0).reindex(
            units.index, fill_value=False
        )
    return units


def _lin_estimate(units: pd.DataFrame, column: str) -> tuple[float, float]:
    """Lin's regression: y on arm, cell indicators and arm x centred indicators (HC2)."""
    y = units[column].astype(float).to_numpy()
    treated = (units.variant == "treatment").to_numpy(dtype=float)
    dummies = pd.get_dummies(units.cell, drop_first=True).to_numpy(dtype=float)
    centred = dummies - dummies.mean(axis=0)
    design = sm.add_constant(np.column_stack([treated, dummies, treated[:, None] * centred]))
    fit = sm.OLS(y, design).fit(cov_type="HC2")
    return float(fit.params[1]), float(fit.bse[1])


@pytest.fixture(scope="module")
def events() -> Events:
    return _simulate(np.random.default_rng(9))


@pytest.fixture(scope="module")
def units(events: Events) -> pd.DataFrame:
    return _per_unit(events)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def _results(url: str, events: Events) -> tuple[ExperimentResult, ExperimentResult]:
    """The same events analysed with absolute and with relative effects."""
    write(url, events)
    spec = parse_experiment(SPEC)
    register(url, spec, PHASES)
    relative = parse_experiment(SPEC | {"analysis": SPEC["analysis"] | {"relative": True}})
    return analyze(url, spec), analyze(url, relative)


def test_post_stratified_metrics_match_references(
    events: Events, units: pd.DataFrame, store_url: str
) -> None:
    absolute, relative = _results(store_url, events)
    metrics = {m.name: m for m in absolute.metrics}

    for name, column in (("revenue", "purchase"), ("converted", "purchase_any")):
        got = metrics[name].comparisons[0]
        assert metrics[name].method == "post-stratified"
        effect, se = _lin_estimate(units, column)
        assert got.effect == pytest.approx(effect, rel=1e-9)
        assert (got.ci_high - got.ci_low) / (2 * 1.959964) == pytest.approx(se, rel=0.01)
        assert "7 cells, 1 thin cells pooled" in metrics[name].note
    assert not metrics["revenue"].cuped  # post-stratification replaces CUPED for the metric
    assert metrics["revenue_plain"].cuped

    # the cells explain part of the spend: the stratified interval is narrower
    plain = metrics["revenue_plain"].comparisons[0]
    stratified = metrics["revenue"].comparisons[0]
    assert stratified.ci_high - stratified.ci_low < 0.8 * (plain.ci_high - plain.ci_low)

    # ratios as gbstats computes them: per arm, numerator and denominator cell means weighted
    # by the cells' shares of all units, then divided; their covariance adds the variance of
    # the estimated shares (multinomial) to the cells' sampling variance
    cells = sorted(units.cell.unique())
    shares = units.cell.value_counts(normalize=True)[cells].to_numpy()
    means = np.zeros((4, len(cells)))  # rows: control m, d; treatment m, d
    covariance = np.zeros((4, 4))
    for k, cell in enumerate(cells):
        for offset, arm in ((0, "control"), (2, "treatment")):
            rows = units[(units.cell == cell) & (units.variant == arm)]
            values = rows[["purchase", "visit"]].to_numpy(dtype=float)
            means[offset : offset + 2, k] = values.mean(axis=0)
            block = np.cov(values, rowvar=False, ddof=1) / len(rows)
            covariance[offset : offset + 2, offset : offset + 2] += shares[k] ** 2 * block
    multinomial = (np.diag(shares) - np.outer(shares, shares)) / len(units)
    covariance += means @ multinomial @ means.T
    mu = means @ shares
    ratio_c, ratio_t = mu[0] / mu[1], mu[2] / mu[3]
    d_ratio = np.array([1 / mu[1], -mu[0] / mu[1] ** 2, 1 / mu[3], -mu[2] / mu[3] ** 2])
    got = metrics["per_visit"].comparisons[0]
    assert got.effect == pytest.approx(ratio_t - ratio_c, rel=1e-9)
    gradient = d_ratio * np.array([-1, -1, 1, 1])
    half_width = -special.ndtri(0.025) * math.sqrt(gradient @ covariance @ gradient)
    assert got.ci_high - got.effect == pytest.approx(half_width, rel=1e-9)

    # relative effects: the same means, delta method on ratio_t / ratio_c - 1
    got_relative = {m.name: m for m in relative.metrics}["per_visit"].comparisons[0]
    lift = ratio_t / ratio_c - 1
    gradient = d_ratio * np.array([-ratio_t / ratio_c**2] * 2 + [1 / ratio_c] * 2)
    se = math.sqrt(gradient @ covariance @ gradient)
    assert got_relative.effect == pytest.approx(lift, rel=1e-9)
    assert got_relative.p_value == pytest.approx(2 * special.ndtr(-abs(lift) / se), rel=1e-9)


def test_single_cell_falls_back_to_the_plain_comparison(events: Events, tmp_path: Any) -> None:
    absolute, _ = _results(f"sqlite:///{tmp_path / 'events.db'}", events)
    metrics = {m.name: m for m in absolute.metrics}
    one = metrics["revenue_one_cell"]
    assert one.method == "frequentist (single-cell fallback)"
    # the same units and values without CUPED: Welch's test on revenue
    plain = analyze(
        f"sqlite:///{tmp_path / 'events.db'}",
        parse_experiment(SPEC | {"analysis": SPEC["analysis"] | {"cuped": False}}),
    )
    reference = {m.name: m for m in plain.metrics}["revenue_plain"].comparisons[0]
    assert one.comparisons[0].effect == pytest.approx(reference.effect, rel=1e-12)
    assert one.comparisons[0].p_value == pytest.approx(reference.p_value, rel=1e-9)


def test_rollups_give_the_same_cells(events: Events, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    absolute, _ = _results(url, events)
    rolled = analyze(url, parse_experiment(SPEC), AnalysisOptions(rollups=True))
    for direct, folded in zip(absolute.metrics, rolled.metrics, strict=True):
        assert folded.method == direct.method
        assert folded.comparisons[0].effect == pytest.approx(direct.comparisons[0].effect)
        assert folded.comparisons[0].p_value == pytest.approx(direct.comparisons[0].p_value)


def test_a_phase_without_units_reports_too_few_units_instead_of_failing(tmp_path: Any) -> None:
    """Before any exposure (a new phase, or a cutoff before the first), a post-stratified
    metric has no cell at all. The analysis failed ("need one control and one treatment
    statistic per cell, got 0 and 0"), and with it a rollout tick; it now says too few units,
    as an unstratified metric does."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    register(url, parse_experiment(SPEC), PHASES)
    result = analyze(url, "strata")
    codes = {m.name: [c.error_code for c in m.comparisons] for m in result.metrics}
    assert codes == {m["name"]: ["too_few_units"] for m in SPEC["metrics"]}


def test_post_stratify_is_validated() -> None:
    base = {k: v for k, v in SPEC.items() if k != "metrics"}
    metric = {"name": "r", "kind": "sum", "event": "purchase", "post_stratify": ["country"]}
    with pytest.raises(InvalidSpecError, match="fixed-horizon frequentist"):
        parse_experiment(base | {"metrics": [metric], "analysis": {"method": "bayesian"}})
    bad = metric | {"post_stratify": ["country", "country"]}
    with pytest.raises(InvalidSpecError, match="names an attribute twice"):
        parse_experiment(base | {"metrics": [bad]})
    with pytest.raises(InvalidSpecError, match=r"post_stratify\[0\]"):
        parse_experiment(base | {"metrics": [metric | {"post_stratify": ["a.b"]}]})
    quantile = {"name": "q", "kind": "latency", "quantile": 0.9, "post_stratify": ["country"]}
    with pytest.raises(InvalidSpecError, match="'post_stratify' applies to"):
        parse_experiment(base | {"metrics": [quantile]})
