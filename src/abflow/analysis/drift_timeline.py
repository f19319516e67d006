"""Drift over time per variant, from the live monitor's history (``abflow monitor``).

The monitor stores one record per window, kind, variant, feature and method
(:func:`abflow.store.monitoring.monitor_history`). This module turns that history into what
the dashboard's monitoring panel and the HTML report both show, so they draw the same lines:
each measure as one line per variant over the windows, the alarms, a sentence saying how
much history there is (or that the monitor has not run), and for analysis the latest verdict
of every measure with a train/serve-skew flag where a variant's features drifted from the
training data of its model.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

from markupsafe import Markup

from abflow.analysis.formatting import format_p_value, format_timestamp
from abflow.analysis.results import ExperimentResult, MonitoringSummary
from abflow.analysis.svg import Band, line_chart
from abflow.store.aggregates import Window
from abflow.store.monitoring import MonitorRecord

__all__ = [
    "NO_DATA",
    "drift_alarms",
    "drift_charts",
    "drift_message",
    "drift_summary",
    "latest_verdicts",
    "measure_title",
    "measure_value",
    "monitoring_lines",
    "train_serve_skew",
]

NO_DATA = "No monitoring data yet: run `abflow monitor` to record drift per variant over time."

_KINDS = {
    "feature_drift": "feature drift",
    "prediction_drift": "prediction drift",
    "variant_skew": "skew between variants",
    "quality": "quality",
}


def measure_title(record: MonitorRecord) -> str:
    """``feature drift of amount (psi)``: what one chart shows."""
    kind = _KINDS.get(record.kind, record.kind.replace("_", " "))
    feature = f" of {record.feature}" if record.feature else ""
    return f"{kind}{feature} ({record.method})" if record.method else kind + feature


def measure_value(record: MonitorRecord) -> str:
    """The value as a table cell: quality as a percentage, drift to four decimals."""
    if record.value is None:
        return "—"
    if record.kind == "quality":
        return f"{record.value:.2%}"
    return f"{record.value:.4f}" if abs(record.value) >= 1e-4 else "<0.0001"


def _window_label(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _line_name(record: MonitorRecord) -> str:
    variant = record.variant or "challengers vs control"
    return f"{variant} (vs training data)" if record.reference == "training" else variant


def drift_charts(history: Sequence[MonitorRecord]) -> list[tuple[str, Markup]]:
    """One chart per measure, ``(title, svg)``, sorted by title: a line per variant over
    the windows (quality in percent). Records without a value draw nothing."""
    series: dict[str, dict[str, list[tuple[str, float, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in history:
        if record.value is None:
            continue
        value = record.value * (100.0 if record.kind == "quality" else 1.0)
        point = (_window_label(record.window_start), value, value, value)
        series[measure_title(record)][_line_name(record)].append(point)
    charts = []
    for title, by_line in sorted(series.items()):
        bands = [Band(name, points) for name, points in sorted(by_line.items())]
        unit = "%" if title.startswith("quality") else "per window"
        charts.append((title, line_chart(bands, title, f"value ({unit})", zero_line=False)))
    return charts


def drift_alarms(history: Sequence[MonitorRecord]) -> list[dict[str, str]]:
    """Every alarm as text cells: window, variant, measure, value, threshold, p."""
    return [
        {
            "window": format_timestamp(r.window_start),
            "variant": r.variant or "—",
            "measure": measure_title(r),
            "value": measure_value(r),
            "threshold": "—" if r.threshold is None else f"{r.threshold:g}",
            "p": format_p_value(r.p_value),
        }
        for r in history
        if r.is_alarm
    ]


def drift_message(history: Sequence[MonitorRecord]) -> str:
    """How many windows, from when to when, and how many alarms; :data:`NO_DATA` when no
    window has a value to draw."""
    if not any(r.value is not None for r in history):
        return NO_DATA
    windows = len({r.window_start for r in history})
    alarms = sum(r.is_alarm for r in history)
    return (
        f"{windows:,} monitoring windows, {format_timestamp(history[0].window_start)} to "
        f"{format_timestamp(history[-1].window_start)}; "
        + {0: "no alarms.", 1: "1 alarm."}.get(alarms, f"{alarms:,} alarms.")
    )


def latest_verdicts(history: Sequence[MonitorRecord]) -> list[MonitorRecord]:
    """Each measure's record from the last window in which it had a value (history is
    oldest first), in the history's order."""
    latest: dict[tuple[str, str, str, str], MonitorRecord] = {}
    for record in history:
        if record.value is not None:
            latest[(record.kind, record.variant, record.feature, record.method)] = record
    return sorted(latest.values(), key=lambda r: (r.window_start, r.kind, r.variant, r.feature))


def train_serve_skew(latest: Sequence[MonitorRecord]) -> list[str]:
    """A sentence per latest verdict that is a feature-drift alarm against the training
    data of the variant's model (drift against a window is drift over time, not skew)."""
    return [
        f"train/serve skew: feature {r.feature!r} of variant {r.variant!r} differs from its "
        f"training data ({r.method} {measure_value(r)}, threshold "
        f"{'—' if r.threshold is None else f'{r.threshold:g}'}) in the window from "
        f"{format_timestamp(r.window_start)}"
        for r in latest
        if r.kind == "feature_drift" and r.reference == "training" and r.is_alarm
    ]


def drift_summary(history: Sequence[MonitorRecord], window: Window) -> MonitoringSummary | None:
    """The monitor's records whose windows overlap the analysed ``window``, summarised;
    None when there are none. With a data cutoff, only the records the monitor had computed
    by then, on windows that had ended by then."""
    kept = [
        r
        for r in history
        if (window.start is None or r.window_end > window.start)
        and (window.end is None or r.window_start < window.end)
        and (
            window.until is None or (r.computed_at < window.until and r.window_end <= window.until)
        )
    ]
    if not kept:
        return None
    latest = latest_verdicts(kept)
    return MonitoringSummary(
        windows=len({r.window_start for r in kept}),
        first_window_start=kept[0].window_start,
        last_window_start=kept[-1].window_start,
        alarms=sum(r.is_alarm for r in kept),
        latest=latest,
        train_serve_skew=train_serve_skew(latest),
        history=kept,
    )


def monitoring_lines(result: ExperimentResult) -> list[str]:
    """The text reports' monitor lines: how much history, then each latest verdict that is
    an alarm (none without monitor results for the analysed window)."""
    summary = result.monitoring
    if summary is None:
        return []
    return [drift_message(summary.history)] + [
        f"latest alarm: {r.variant or 'challengers vs control'} {measure_title(r)} "
        f"{measure_value(r)} in the window from {format_timestamp(r.window_start)}"
        for r in summary.latest
        if r.is_alarm
    ]
