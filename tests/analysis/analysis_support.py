"""A synthetic experiment written into a real store, with the raw rows kept for references.

Imported by the analysis tests (pytest puts this folder on ``sys.path``).

Every analysis test compares what abflow computes in SQL with what a naive pandas/numpy
pipeline computes from the same rows, so the generator keeps both.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from abflow.spec import ExperimentSpec, spec_hash
from abflow.store.aggregates import connect
from abflow.store.clickhouse import create_tables, is_clickhouse_url
from abflow.store.schema import (
    experiment_versions,
    exposures,
    metadata,
    outcomes,
    phases,
    predictions,
)

DAY = 86400.0
START = 1_764_000_000.0  # 2025-11-24, a fixed epoch so cohort days are reproducible
TABLES = [experiment_versions, phases, exposures, predictions, outcomes]

VARIANTS: list[dict[str, str]] = [
    {"name": "control", "model": "models:/m@champion"},
    {"name": "treatment", "model": "models:/m@challenger"},
]
"""The two variants of the analysis tests' experiments (control first)."""

SPEC: dict[str, Any] = {
    "key": "checkout",
    "variants": VARIANTS,
    "weights": [0.5, 0.5],
    "metrics": [
        {"name": "converted", "kind": "conversion", "event": "purchase", "role": "primary"},
        {"name": "revenue", "kind": "sum", "event": "purchase"},
        {"name": "order_value", "kind": "mean", "event": "purchase"},
        {"name": "per_visit", "kind": "ratio", "numerator": "purchase", "denominator": "visit"},
        {"name": "recall", "kind": "recall"},
        {
            "name": "fpr",
            "kind": "false_positive_rate",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.05,
        },
        {"name": "accuracy", "kind": "accuracy"},
        {"name": "mae", "kind": "mae", "direction": "decrease"},
        {
            "name": "latency_p90",
            "kind": "latency",
            "quantile": 0.9,
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.5,
        },
        {"name": "errors", "kind": "error_rate", "direction": "decrease"},
        {
            "name": "cost",
            "kind": "cost",
            "cost_per_1000": 2.0,
            "cost_per_second": 0.5,
            "direction": "decrease",
        },
    ],
    "analysis": {
        "alpha": 0.05,
        "method": "frequentist",
        "correction": "holm",
        "relative": False,
        "minimum_detectable_effect": 0.05,
    },
}


@dataclass
class Events:
    """Rows per table, ready to insert, and as data frames for the reference computations."""

    exposures: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return (
            pd.DataFrame(self.exposures),
            pd.DataFrame(self.outcomes),
            pd.DataFrame(self.predictions),
        )


def simulate(
    rng: np.random.Generator,
    *,
    units: int = 2000,
    phase: int = 1,
    start: float = START,
    split: float = 0.5,
    lift: float = 0.03,
    experiment_key: str = "checkout",
    prefix: str = "",
) -> Events:
    """Units exposed over four days; treatment converts ``lift`` more and has more false positives."""
    ids = itertools.count()
    events = Events()
    for u in range(units):
        unit = f"{prefix}u{u}"
        is_treatment = rng.random() < split
        variant = "treatment" if is_treatment else "control"
        country = ["FR", "DE", "US"][int(rng.integers(3))]
        first = start + rng.uniform(0, 4 * DAY)
        for k in range(int(rng.integers(1, 4))):
            events.exposures.append(
                {
                    "event_id": f"{prefix}{phase}e{next(ids)}",
                    "ts": first + k * 600.0,
                    "experiment_key": experiment_key,
                    "phase": phase,
                    "unit_id": unit,
                    "variant": variant,
                    "attributes_json": orjson.dumps({"country": country}).decode(),
                }
            )
        # pre-period purchases (CUPED covariate) and in-experiment visits and purchases
        propensity = rng.uniform(0.05, 0.4)
        for _ in range(int(rng.poisson(propensity * 3))):
            events.outcomes.append(
                {
                    "event_id": f"{prefix}{phase}o{next(ids)}",
                    "ts": first - rng.uniform(60, 5 * DAY),
                    "unit_id": unit,
                    "name": "purchase",
                    "value": float(rng.gamma(2.0, 20.0)),
                }
            )
        visits = int(rng.integers(1, 6))
        for _ in range(visits):
            events.outcomes.append(
                {
                    "event_id": f"{prefix}{phase}o{next(ids)}",
                    "ts": first + rng.uniform(1, DAY),
                    "unit_id": unit,
                    "name": "visit",
                    "value": 1.0,
                }
            )
        rate = propensity + (lift if is_treatment else 0.0)
        for _ in range(int(rng.binomial(visits, min(rate, 1.0)))):
            events.outcomes.append(
                {
                    "event_id": f"{prefix}{phase}o{next(ids)}",
                    "ts": first + rng.uniform(1, 2 * DAY),
                    "unit_id": unit,
                    "name": "purchase",
                    "value": float(rng.gamma(2.0, 25.0)),
                }
            )
        for _ in range(int(rng.integers(0, 4))):
            request = f"{prefix}{phase}r{next(ids)}"
            label = float(rng.random() < 0.3)
            noise = 0.35 if is_treatment else 0.25
            score = float(np.clip(label * 0.6 + 0.2 + rng.normal(0, noise), 0, 1))
            has_error = rng.random() < (0.02 if is_treatment else 0.01)
            events.predictions.append(
                {
                    "event_id": f"{prefix}{phase}p{next(ids)}",
                    "ts": first + rng.uniform(0, 600),
                    "request_id": request,
                    "experiment_key": experiment_key,
                    "phase": phase,
                    "unit_id": unit,
                    "variant": variant,
                    "model_version": variant,
                    "latency_ms": float(rng.gamma(4.0, 2.5 if is_treatment else 2.0)),
                    "is_fallback": bool(rng.random() < 0.05),
                    "is_shadow": False,
                    "score": None if has_error else score,
                    "output_json": None,
                    "features_hash": None,
                    "error": "boom" if has_error else None,
                }
            )
            if rng.random() < 0.9:
                events.outcomes.append(
                    {
                        "event_id": f"{prefix}{phase}o{next(ids)}",
                        "ts": first + DAY,
                        "unit_id": unit,
                        "name": "label",
                        "value": label,
                        "request_id": request,
                        "experiment_key": experiment_key,
                    }
                )
    return events


def _engine(url: str) -> sa.Engine:
    """SQLite, PostgreSQL and DuckDB through SQLAlchemy; ClickHouse through its own engine."""
    return connect(url) if is_clickhouse_url(url) else sa.create_engine(url)


def _create(engine: sa.Engine) -> None:
    if engine.dialect.name == "clickhousedb":
        create_tables(engine, TABLES)  # ClickHouse tables need an engine and a sort key
    else:
        metadata.create_all(engine, tables=TABLES)


def shadow_reference_pairs(events: Events) -> pd.DataFrame:
    """One row per request both the served and a shadow model answered (columns suffixed
    ``_0`` and ``_1``), with its label ``y`` (NaN when none), computed with pandas."""
    predictions = pd.DataFrame(events.predictions)
    served = predictions[~predictions.is_shadow].set_index("request_id")
    shadow = predictions[predictions.is_shadow].set_index("request_id")
    pairs = served.join(shadow, lsuffix="_0", rsuffix="_1", how="inner")
    labels = pd.DataFrame(events.outcomes).set_index("request_id")["value"]
    return pairs.join(labels.rename("y"))


def write(url: str, events: Events) -> None:
    engine = _engine(url)
    try:
        _write(engine, events)
    finally:
        engine.dispose()


def _write(engine: sa.Engine, events: Events) -> None:
    _create(engine)
    with engine.begin() as connection:
        for table, rows in (
            (exposures, events.exposures),
            (outcomes, events.outcomes),
            (predictions, events.predictions),
        ):
            names = [column.name for column in table.columns]
            full = [{name: row.get(name) for name in names} for row in rows]
            for chunk in range(0, len(full), 5000):
                connection.execute(table.insert(), full[chunk : chunk + 5000])


def register(url: str, spec: ExperimentSpec, phase_rows: list[dict[str, Any]]) -> None:
    engine = _engine(url)
    try:
        _register(engine, spec, phase_rows)
    finally:
        engine.dispose()


def _register(engine: sa.Engine, spec: ExperimentSpec, phase_rows: list[dict[str, Any]]) -> None:
    _create(engine)
    with engine.begin() as connection:
        connection.execute(
            experiment_versions.insert(),
            [
                {
                    "experiment_key": spec.key,
                    "version": 1,
                    "spec_json": orjson.dumps(spec.model_dump(mode="json")).decode(),
                    "spec_hash": spec_hash(spec),
                    "created_at": START - DAY,
                }
            ],
        )
        connection.execute(
            phases.insert(),
            [
                {"experiment_key": spec.key, "spec_version": 1, "reason": "", **row}
                for row in phase_rows
            ],
        )
