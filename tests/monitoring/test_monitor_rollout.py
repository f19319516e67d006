"""``rollout tick`` and the live monitor: an alarm on the challenger holds or rolls back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from abflow.rollout.controller import tick
from abflow.spec import ExperimentSpec, parse_experiment
from abflow.store import EventStore
from abflow.store.monitoring import MonitorRecord, save_monitor_results

HOUR = 3600.0


def plan(action: str | None) -> ExperimentSpec:
    rollout: dict[str, Any] = {
        "steps": [{"traffic": 0.1, "min_duration_hours": 0, "min_samples": 0}, {"traffic": 0.5}]
    }
    if action is not None:
        rollout["on_monitor_alarm"] = action
    return parse_experiment(
        {
            "key": "fraud",
            "variants": [
                {"name": "control", "model": "python:m:control"},
                {"name": "challenger", "model": "python:m:challenger"},
            ],
            "rollout": rollout,
        }
    )


def alarm(
    start: float, variant: str = "challenger", kind: str = "prediction_drift"
) -> MonitorRecord:
    return MonitorRecord(
        experiment_key="fraud",
        window_start=start,
        window_end=start + HOUR,
        kind=kind,
        variant=variant,
        feature="score",
        method="psi",
        value=0.41,
        p_value=None,
        threshold=0.2,
        is_alarm=True,
        n_reference=1000,
        n_current=1000,
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with EventStore.open(f"sqlite:///{tmp_path / 'store.db'}", upgrade=True) as opened:
        yield opened


def started(store: EventStore, action: str | None) -> float:
    store.register_experiment(plan(action), actor="test")
    now = store.current_phase("fraud").started_at + 10.0
    assert tick(store, "fraud", now=now).action == "started"
    return now + 2 * HOUR


@pytest.mark.parametrize(("action", "expected"), [(None, "held"), ("rollback", "rolled_back")])
def test_an_alarm_on_the_challenger_holds_or_rolls_back(
    store: EventStore, action: str | None, expected: str
) -> None:
    now = started(store, action)
    window = now - now % HOUR
    save_monitor_results(store, "fraud", window, [alarm(window)])
    result = tick(store, "fraud", now=now)
    assert result.action == expected
    assert any("scores drifted" in reason for reason in result.reasons)
    assert result.evidence["monitor_alarms"]


def test_without_an_alarm_or_with_ignore_the_ramp_goes_on(store: EventStore) -> None:
    now = started(store, None)
    window = now - now % HOUR
    # An alarm on the control, and one on the challenger three windows ago: neither counts.
    save_monitor_results(store, "fraud", window, [alarm(window, variant="control")])
    save_monitor_results(store, "fraud", window - 3 * HOUR, [alarm(window - 3 * HOUR)])
    assert tick(store, "fraud", now=now).action == "advanced"


def test_ignore_looks_past_an_alarm(store: EventStore) -> None:
    now = started(store, "ignore")
    window = now - now % HOUR
    save_monitor_results(store, "fraud", window - HOUR, [alarm(window - HOUR, kind="variant_skew")])
    assert tick(store, "fraud", now=now).action == "advanced"
