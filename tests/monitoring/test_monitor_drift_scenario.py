"""The fraud case of issue #13 end to end: real gateway, real store, a simulated clock.

Legitimate shoppers' ``merchant_risk`` moves at the drift start; the challenger leans on it
and starts flagging them. Labels (chargebacks) take a week. The prediction-drift alarm must
fire within one monitoring window of the drift start, before any label has arrived, with no
alarm before it, and the rollout (``on_monitor_alarm: rollback``) must roll the challenger back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from abflow.demo import DriftOptions, run_drift_scenario
from abflow.rollout.controller import rollout_status
from abflow.store import EventStore
from abflow.store.monitoring import monitor_history
from abflow.store.schema import outcomes


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_prediction_drift_is_caught_within_a_window_and_rolled_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    options = DriftOptions(store_url=url, days=2, drift_day=1, workdir=tmp_path / "work")
    outcome = run_drift_scenario(options)

    assert outcome.false_alarms == 0
    assert outcome.alarm_at is not None
    delay = outcome.detection_delay_hours
    assert delay is not None
    assert 0 < delay <= options.window_hours  # within one monitoring window of the start
    assert outcome.labels_at_alarm == 0  # before any label arrived
    assert outcome.rolled_back_at == outcome.alarm_at
    with EventStore.open(url) as store:
        assert rollout_status(store, outcome.experiment_key).state.stage == "rolled_back"
        history = monitor_history(store, outcome.experiment_key)
        with store.engine.connect() as connection:
            labels = connection.execute(sa.select(sa.func.count()).select_from(outcomes))
            assert labels.scalar_one() == 0
    # The challenger's scores drifted; the champion ignores merchant_risk, so its did not.
    alarmed = {(r.variant, r.kind) for r in history if r.is_alarm}
    assert ("challenger", "prediction_drift") in alarmed
    assert ("champion", "prediction_drift") not in alarmed
    # Both variants see the same drifted inputs: feature drift on both, no skew between them.
    assert ("champion", "feature_drift") in alarmed
    assert not [r for r in history if r.kind == "variant_skew" and r.is_alarm]
