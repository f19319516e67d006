"""Every statement a full analysis executes, captured on SQLite, for the warehouse tests.

Imported by test_analysis_warehouse_dialects.py (which compiles the statements for each
warehouse dialect) and test_analysis_spark.py (which also runs them on Spark SQL). The store
holds a synthetic experiment with every metric kind, CUPED and the sequential timeline, and
shadow copies of half the served predictions, so that the shadow statements return rows too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from analysis_support import SPEC, START, Events, register, simulate, write

from abflow.analysis import analyze
from abflow.spec import parse_experiment

PHASES = [{"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}]

Statement = sa.Select[Any] | sa.CompoundSelect


@dataclass(frozen=True)
class CapturedAnalysis:
    """The SQLite store an analysis ran on and the queries it sent, in order."""

    url: str
    statements: list[Statement]


def with_shadow_copies(events: Events, rng: np.random.Generator, share: float = 0.5) -> Events:
    """``events`` plus a shadow answer (variant ``treatment``) to ``share`` of the served
    predictions: a noisier score, a slower call, and a few errors (some of them timeouts)."""
    shadows: list[dict[str, Any]] = []
    for served in events.predictions:
        if rng.random() >= share:
            continue
        draw = rng.random()
        error = "read timeout" if draw < 0.03 else "boom" if draw < 0.06 else None
        score = served["score"]
        shadow_score = None
        if error is None and score is not None:
            shadow_score = float(np.clip(score + rng.normal(0.0, 0.05), 0.0, 1.0))
        shadows.append(
            {
                **served,
                "event_id": f"{served['event_id']}s",
                "ts": served["ts"] + 0.01,
                "variant": "treatment",
                "model_version": "candidate",
                "latency_ms": float(rng.gamma(4.0, 2.6)),
                "is_fallback": False,
                "is_shadow": True,
                "score": shadow_score,
                "error": error,
            }
        )
    return Events(events.exposures, events.outcomes, [*events.predictions, *shadows])


def capture_analysis(folder: Path, units: int = 120) -> CapturedAnalysis:
    """Write the experiment into a SQLite store in ``folder``, analyse it, and keep every
    SELECT the analysis executed (with its bound parameters)."""
    rng = np.random.default_rng(5)
    url = f"sqlite:///{folder / 'events.db'}"
    write(url, with_shadow_copies(simulate(rng, units=units), rng))
    register(url, parse_experiment(SPEC), PHASES)
    engine = sa.create_engine(url)
    captured: list[Statement] = []

    def capture(_conn: Any, clause: Any, *_args: Any) -> None:
        if isinstance(clause, sa.Select | sa.CompoundSelect):
            captured.append(clause)

    sa.event.listen(engine, "before_execute", capture)
    try:
        result = analyze(engine, "checkout")
    finally:
        engine.dispose()
    assert result.metrics  # the analysis ran, so the captured statements are the real ones
    assert result.shadow  # and the shadow statements had pairs to read
    return CapturedAnalysis(url, captured)
