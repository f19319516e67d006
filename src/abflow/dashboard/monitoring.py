"""Drift over time per variant, from the monitor's history, when the monitor has run.

The monitor (``abflow monitor``) writes one record per experiment, variant, window and
measure; :func:`monitoring_view` draws each measure as a line per variant over the windows.
When the store has no history (the monitor never ran, or this abflow has no monitor yet) the
panel says so instead of drawing empty axes.
"""

from __future__ import annotations

import importlib
import math
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from abflow.analysis.svg import Band, line_chart
from abflow.store import EventStore

__all__ = ["NO_DATA", "monitoring_view"]

NO_DATA = "No monitoring data yet: run `abflow monitor` to record drift per variant over time."

_HOMES = ("abflow.monitoring.monitor", "abflow.store.monitor_results", "abflow.store")
"""Where the monitor's read function ``monitor_history(engine, experiment_key)`` may live."""

History = Callable[[Any, str], list[Any]]


def _history_function() -> History | None:
    for home in _HOMES:
        try:
            module = importlib.import_module(home)
        except ImportError:
            continue
        found = getattr(module, "monitor_history", None)
        if callable(found):
            return found  # type: ignore[no-any-return]
    return None


def _field(record: Any, *names: str) -> Any:
    for name in names:
        value = record.get(name) if isinstance(record, dict) else getattr(record, name, None)
        if value is not None:
            return value
    return None


def _window_label(value: Any) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(value)))
    return str(value)


def monitoring_view(store: EventStore, key: str) -> dict[str, Any]:
    """``{"message": ..., "charts": [{"title", "svg"}]}``: one chart per monitored measure."""
    history = _history_function()
    if history is None:
        return {"message": NO_DATA, "charts": []}
    records = history(store.engine, key)
    series: dict[str, dict[str, list[tuple[str, float, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in records:
        value = _field(record, "value", "statistic", "score")
        window = _field(record, "window_start", "window", "ts")
        if not isinstance(value, int | float) or window is None:
            continue
        measure = " · ".join(
            str(part)
            for part in (_field(record, "kind"), _field(record, "feature", "metric"))
            if part
        )
        method = _field(record, "method")
        title = f"{measure} ({method})" if method else measure or "drift"
        variant = str(_field(record, "variant") or "all variants")
        point = (_window_label(window), float(value), float(value), float(value))
        series[title][variant].append(point)
    charts = [
        {
            "title": title,
            "svg": str(
                line_chart(
                    [Band(variant, sorted(points)) for variant, points in by_variant.items()],
                    title,
                    "value per window",
                    zero_line=False,
                )
            ),
        }
        for title, by_variant in sorted(series.items())
    ]
    if not charts:
        return {"message": NO_DATA, "charts": []}
    return {"message": f"{len(records):,} monitoring records.", "charts": charts}
