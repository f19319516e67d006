"""Drift over time per variant, from the monitor's history (``abflow monitor``).

The panel draws each measure as one line per variant over the windows and lists the alarms;
when the monitor has not run for the experiment it says so instead of drawing empty axes.
The charts and rows come from :mod:`abflow.analysis.drift_timeline`, which the HTML report
uses too, so both show the same lines.
"""

from __future__ import annotations

from typing import Any

from abflow.analysis.drift_timeline import NO_DATA, drift_alarms, drift_charts, drift_message
from abflow.store import EventStore
from abflow.store.monitoring import monitor_history

__all__ = ["NO_DATA", "monitoring_view"]


def monitoring_view(store: EventStore, key: str) -> dict[str, Any]:
    """``message``, one chart per monitored measure (``title``, ``svg``), and the alarms."""
    records = monitor_history(store.engine, key)
    return {
        "message": drift_message(records),
        "charts": [{"title": title, "svg": str(svg)} for title, svg in drift_charts(records)],
        "alarms": drift_alarms(records),
    }
