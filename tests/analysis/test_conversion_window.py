"""Conversion windows (issue #14, item 10): a metric counts only the outcomes from ``delay``
after the unit's first exposure, for ``length``. Checked against a pandas computation on the
raw rows (first exposure per unit, outcomes inside the window, per-unit values) and scipy's
Welch test, on SQLite and on PostgreSQL, with outcomes placed exactly on both edges."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from analysis_support import DAY, START, VARIANTS, Events, register, write
from scipy import stats

from abflow.analysis import AnalysisOptions, ExperimentResult, analyze
from abflow.errors import InvalidSpecError
from abflow.spec import experiment_json_schema, parse_experiment

HOUR = 3600.0
UNTIL = START + 4 * DAY  # windows of units exposed late are cut by the end of the analysis
WINDOWS = {  # metric -> (delay, length) in seconds, as the spec below declares them
    "conv_72h": (HOUR, 72 * HOUR),
    "revenue_24h": (0.0, 24 * HOUR),
    "revenue_all": (0.0, None),
    "order_value_72h": (HOUR, 72 * HOUR),
    "per_visit_48h": (0.0, 48 * HOUR),
}
SPEC: dict[str, Any] = {
    "key": "windows",
    "variants": VARIANTS,
    "metrics": [
        {
            "name": "conv_72h",
            "kind": "conversion",
            "event": "purchase",
            "role": "primary",
            "window": {"delay_hours": 1, "length_hours": 72},
        },
        {
            "name": "revenue_24h",
            "kind": "sum",
            "event": "purchase",
            "window": {"length_hours": 24},
        },
        {"name": "revenue_all", "kind": "sum", "event": "purchase"},
        {
            "name": "order_value_72h",
            "kind": "mean",
            "event": "purchase",
            "window": {"delay_hours": 1, "length_hours": 72},
        },
        {
            "name": "per_visit_48h",
            "kind": "ratio",
            "numerator": "purchase",
            "denominator": "visit",
            "window": {"length_hours": 48},
        },
    ],
    "analysis": {"relative": False, "correction": "none"},
}
PHASES = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]


def _simulate(rng: np.random.Generator, units: int = 600) -> Events:
    """Outcomes from a day before to five days after first exposure, some on the edges."""
    ids = itertools.count()
    events = Events()

    def outcome(unit: str, ts: float, name: str, value: float) -> None:
        events.outcomes.append(
            {"event_id": f"o{next(ids)}", "ts": ts, "unit_id": unit, "name": name, "value": value}
        )

    for u in range(units):
        unit = f"u{u}"
        treated = rng.random() < 0.5
        first = START + rng.uniform(0, 3.5 * DAY)
        for k in range(int(rng.integers(1, 4))):
            events.exposures.append(
                {
                    "event_id": f"e{next(ids)}",
                    "ts": first + k * rng.uniform(600, 2 * DAY),
                    "experiment_key": "windows",
                    "phase": 1,
                    "unit_id": unit,
                    "variant": "treatment" if treated else "control",
                    "attributes_json": orjson.dumps({"country": "FR"}).decode(),
                }
            )
        rate = 0.8 if treated else 0.6
        for _ in range(int(rng.poisson(rate * 3))):
            offset = rng.uniform(-DAY, 5 * DAY)
            outcome(unit, first + offset, "purchase", float(rng.gamma(2.0, 20.0)))
        for _ in range(int(rng.integers(1, 6))):
            outcome(unit, first + rng.uniform(-DAY, 5 * DAY), "visit", 1.0)
        edge = u % 5
        if edge == 1:  # on the 72 h window's start: counted; a little before it: not
            outcome(unit, first + HOUR, "purchase", 30.0)
            outcome(unit, first + (HOUR - 0.5), "purchase", 40.0)
        elif edge == 2:  # on the 72 h window's end: counted; a second later: not
            outcome(unit, first + (HOUR + 72 * HOUR), "purchase", 50.0)
            outcome(unit, first + (HOUR + 72 * HOUR + 1.0), "purchase", 60.0)
        elif edge == 3:  # the 24 h window's edges, and a zero-valued purchase
            outcome(unit, first + 24 * HOUR, "purchase", 0.0)
            outcome(unit, first + (24 * HOUR + 1.0), "purchase", 70.0)
    return events


def _per_unit(events: Events) -> pd.DataFrame:
    """Per-unit values of each metric computed from the raw rows, with pandas."""
    exposures = pd.DataFrame(events.exposures)
    exposures = exposures[exposures.ts < UNTIL]
    units = exposures.groupby("unit_id").agg(variant=("variant", "first"), first=("ts", "min"))
    outcomes = pd.DataFrame(events.outcomes)
    outcomes = outcomes[outcomes.ts < UNTIL].merge(units, left_on="unit_id", right_index=True)
    out = units.copy()

    def inside(metric: str, name: str) -> pd.DataFrame:
        delay, length = WINDOWS[metric]
        rows = outcomes[(outcomes.name == name) & (outcomes.ts >= outcomes["first"] + delay)]
        if length is not None:
            rows = rows[rows.ts <= rows["first"] + (delay + length)]
        return rows

    def per_unit(rows: pd.DataFrame, how: str) -> pd.Series:
        grouped = rows.groupby("unit_id").value
        values = grouped.sum() if how == "sum" else grouped.count()
        return values.reindex(units.index, fill_value=0.0).astype(float)

    purchases = inside("conv_72h", "purchase")
    out["conv_72h"] = (purchases[purchases.value > 0].groupby("unit_id").size() > 0).reindex(
        units.index, fill_value=False
    )
    out["revenue_24h"] = per_unit(inside("revenue_24h", "purchase"), "sum")
    out["revenue_all"] = per_unit(inside("revenue_all", "purchase"), "sum")
    out["order_value_72h__num"] = per_unit(purchases, "sum")
    out["order_value_72h__den"] = per_unit(purchases, "count")
    out["per_visit_48h__num"] = per_unit(inside("per_visit_48h", "purchase"), "sum")
    out["per_visit_48h__den"] = per_unit(inside("per_visit_48h", "visit"), "sum")
    return out


@pytest.fixture(scope="module")
def events() -> Events:
    return _simulate(np.random.default_rng(14))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def _analyze(url: str, events: Events, **options: Any) -> ExperimentResult:
    write(url, events)
    register(url, parse_experiment(SPEC), PHASES)
    return analyze(url, "windows", AnalysisOptions(until=UNTIL, timeline=False, **options))


def test_windowed_metrics_match_pandas_and_scipy(events: Events, store_url: str) -> None:
    result = _analyze(store_url, events)
    reference = _per_unit(events)
    arms = {name: reference[reference.variant == name] for name in ("control", "treatment")}
    metrics = {m.name: m for m in result.metrics}
    for name in ("conv_72h", "revenue_24h", "revenue_all"):
        values = {arm: frame[name].astype(float).to_numpy() for arm, frame in arms.items()}
        metric = metrics[name]
        assert [v.n for v in metric.values] == [len(values["control"]), len(values["treatment"])]
        got = [v.value for v in metric.values]
        assert got == pytest.approx(
            [values["control"].mean(), values["treatment"].mean()], rel=1e-9
        )
        c, t = values["control"], values["treatment"]
        ddof = 0 if name == "conv_72h" else 1  # a proportion's variance is p (1 - p)
        welch = stats.ttest_ind_from_stats(
            t.mean(), t.std(ddof=ddof), len(t), c.mean(), c.std(ddof=ddof), len(c), equal_var=False
        )
        comparison = metric.comparisons[0]
        assert comparison.effect == pytest.approx(got[1] - got[0], rel=1e-9)
        assert comparison.p_value == pytest.approx(welch.pvalue, rel=1e-6)
    for name in ("order_value_72h", "per_visit_48h"):
        expected = [
            frame[f"{name}__num"].sum() / frame[f"{name}__den"].sum() for frame in arms.values()
        ]
        assert [v.value for v in metrics[name].values] == pytest.approx(expected, rel=1e-9)
        assert metrics[name].comparisons[0].effect == pytest.approx(
            expected[1] - expected[0], rel=1e-9
        )
    # the windows matter: a window leaves out what the whole-phase metric counts
    assert metrics["revenue_24h"].values[0].value < 0.8 * metrics["revenue_all"].values[0].value


def test_rollups_fall_back_to_raw_events_for_windows(events: Events, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    direct = _analyze(url, events)
    rolled = analyze(url, "windows", AnalysisOptions(until=UNTIL, timeline=False, rollups=True))
    assert any("conversion windows" in warning for warning in rolled.warnings)
    for a, b in zip(direct.metrics, rolled.metrics, strict=True):
        assert [v.value for v in a.values] == [v.value for v in b.values]


def test_window_is_validated() -> None:
    base = {k: v for k, v in SPEC.items() if k != "metrics"}
    latency = {"name": "p90", "kind": "latency", "quantile": 0.9, "window": {"length_hours": 1}}
    with pytest.raises(InvalidSpecError, match="'window' applies to conversion"):
        parse_experiment(base | {"metrics": [latency]})
    negative = {"name": "c", "kind": "conversion", "event": "e", "window": {"delay_hours": -1}}
    with pytest.raises(InvalidSpecError, match=r"window\.delay_hours"):
        parse_experiment(base | {"metrics": [negative]})
    spec = parse_experiment(SPEC)
    assert parse_experiment(spec.model_dump(mode="json")) == spec
    metric = experiment_json_schema()["$defs"]["MetricSpec"]["properties"]
    assert {"window", "post_stratify"} <= set(metric)
    window = experiment_json_schema()["$defs"]["ConversionWindowSpec"]["properties"]
    assert set(window) == {"delay_hours", "length_hours"}
