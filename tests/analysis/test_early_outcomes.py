"""Outcomes sent for an experiment but dated before it began are named in a warning and never
counted (ids replayed from an earlier run, or a sender's clock that is off)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from analysis_support import DAY, SPEC, START, Events, register, simulate, write

from abflow.analysis import analyze
from abflow.spec import parse_experiment

PHASE = {"phase": 1, "weights_json": "[0.5, 0.5]", "coverage": 1.0, "started_at": START}


def _early(events: Events, count: int, *, experiment_key: str | None) -> list[dict[str, object]]:
    units = pd.DataFrame(events.exposures)["unit_id"].drop_duplicates().head(count)
    return [
        {
            "event_id": f"early-{experiment_key}-{i}",
            "ts": START - DAY + i,
            "unit_id": unit,
            "name": "purchase",
            "value": 1000.0,
            "experiment_key": experiment_key,
        }
        for i, unit in enumerate(units)
    ]


def test_early_outcomes_for_this_experiment_are_named_and_do_not_count(tmp_path: object) -> None:
    rng = np.random.default_rng(7)
    events = simulate(rng, units=300)
    clean_url = f"sqlite:///{tmp_path}/clean.db"
    write(clean_url, events)
    register(clean_url, parse_experiment(SPEC), [PHASE])
    clean = analyze(clean_url, "checkout")

    replayed = dataclasses.replace(
        events,
        outcomes=[
            *events.outcomes,
            *_early(events, 12, experiment_key="checkout"),
            *_early(events, 30, experiment_key=None),  # a returning user's history: normal
        ],
    )
    url = f"sqlite:///{tmp_path}/replayed.db"
    write(url, replayed)
    register(url, parse_experiment(SPEC), [PHASE])
    got = analyze(url, "checkout")

    assert [w for w in clean.warnings if "before it began" in w] == []
    (warning,) = [w for w in got.warnings if "before it began" in w]
    assert warning.startswith("12 outcomes sent for this experiment (12 units) are dated before")
    for before, after in zip(clean.metrics, got.metrics, strict=True):
        assert [v.value for v in before.values] == [v.value for v in after.values], before.name
