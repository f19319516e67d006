"""Drift over time per variant, from the monitor's history (``abflow monitor``).

The monitor stores one record per experiment, window, kind, variant, feature and method
(:func:`abflow.store.monitoring.monitor_history`). The panel draws each measure as one line
per variant over the windows and lists the alarms; when the monitor has not run for the
experiment it says so instead of drawing empty axes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from abflow.analysis.formatting import format_p_value, format_timestamp
from abflow.analysis.svg import Band, line_chart
from abflow.store import EventStore
from abflow.store.monitoring import MonitorRecord, monitor_history

__all__ = ["NO_DATA", "monitoring_view"]

NO_DATA = "No monitoring data yet: run `abflow monitor` to record drift per variant over time."

_KINDS = {
    "feature_drift": "feature drift",
    "prediction_drift": "prediction drift",
    "variant_skew": "skew between variants",
    "quality": "quality",
}


def _title(record: MonitorRecord) -> str:
    kind = _KINDS.get(record.kind, record.kind.replace("_", " "))
    feature = f" of {record.feature}" if record.feature else ""
    return f"{kind}{feature} ({record.method})" if record.method else kind + feature


def _value(record: MonitorRecord) -> str:
    if record.value is None:
        return "—"
    if record.kind == "quality":
        return f"{record.value:.2%}"
    return f"{record.value:.4f}" if abs(record.value) >= 1e-4 else "<0.0001"


def _window(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def monitoring_view(store: EventStore, key: str) -> dict[str, Any]:
    """``message``, one chart per monitored measure (``title``, ``svg``), and the alarms."""
    records = monitor_history(store.engine, key)
    series: dict[str, dict[str, list[tuple[str, float, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in records:
        if record.value is None:
            continue
        scale = 100.0 if record.kind == "quality" else 1.0
        value = record.value * scale
        variant = record.variant or "challengers vs control"
        series[_title(record)][variant].append((_window(record.window_start), value, value, value))
    charts = []
    for title, by_variant in sorted(series.items()):
        bands = [Band(variant, points) for variant, points in sorted(by_variant.items())]
        unit = "%" if title.startswith("quality") else "per window"
        chart = line_chart(bands, title, f"value ({unit})", zero_line=False)
        charts.append({"title": title, "svg": str(chart)})
    alarms = [
        {
            "window": format_timestamp(r.window_start),
            "variant": r.variant or "—",
            "measure": _title(r),
            "value": _value(r),
            "threshold": "—" if r.threshold is None else f"{r.threshold:g}",
            "p": format_p_value(r.p_value),
        }
        for r in records
        if r.is_alarm
    ]
    if not charts:
        return {"message": NO_DATA, "charts": [], "alarms": []}
    windows = len({r.window_start for r in records})
    message = (
        f"{windows:,} monitoring windows, {format_timestamp(records[0].window_start)} to "
        f"{format_timestamp(records[-1].window_start)}; "
        + {0: "no alarms.", 1: "1 alarm."}.get(len(alarms), f"{len(alarms):,} alarms.")
    )
    return {"message": message, "charts": charts, "alarms": alarms}
