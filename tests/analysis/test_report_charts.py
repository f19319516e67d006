"""The HTML report's charts are never empty: one day of data still draws each effect.

All units here are exposed within a few hours of one day, so the cumulative timeline has a
single point per metric. Before, that drew a zero-width band and a one-point line (nothing
visible); now each is a dot with its interval as a whisker, placed where the result says.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
from analysis_support import SPEC, START, register, simulate, write

from abflow.analysis import AnalysisOptions, analyze, render_html
from abflow.analysis.svg import (
    Band,
    Bar,
    ForestRow,
    _tick_labels,
    _ticks,
    bar_chart,
    forest_plot,
    line_chart,
)
from abflow.spec import parse_experiment

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def one_day(tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = f"sqlite:///{tmp_path_factory.mktemp('one-day') / 'store.db'}"
    register(url, parse_experiment(SPEC), [{"phase": 1, "started_at": START,
             "weights_json": "[0.5, 0.5]", "coverage": 1.0}])  # fmt: skip
    events = simulate(np.random.default_rng(5), units=600)
    for rows in (events.exposures, events.outcomes, events.predictions):
        for row in rows:  # four days squeezed into under five hours of 2025-11-24 (from 16:00)
            row["ts"] = START + (row["ts"] - START) / 20
    write(url, events)
    return analyze(url, "checkout", AnalysisOptions())


def test_one_day_of_data_draws_a_dot_and_its_interval(one_day: Any) -> None:
    result = one_day
    html = render_html(result)
    charts = re.findall(r"<h3>([^<]+)</h3>(<svg.*?</svg>)", html, flags=re.DOTALL)
    timeline = {name: ElementTree.fromstring(svg) for name, svg in charts}
    with_timeline = [m for m in result.metrics if m.name in timeline]
    shown = {m.name for m in with_timeline}
    assert shown == {m.name for m in result.metrics if m.role != "secondary" and m.timeline}
    assert shown == {"converted", "fpr"}  # 11 metrics: secondaries get no timeline
    for metric in with_timeline:
        (point,) = metric.timeline  # one day: one cumulative point
        assert point.day == "2025-11-24"
        svg = timeline[metric.name]
        (dot,) = svg.iter(f"{SVG}circle")
        vertical = [
            line
            for line in svg.iter(f"{SVG}line")
            if line.get("x1") == line.get("x2") == dot.get("cx")
        ]
        assert len(vertical) == 1
        y_low, y_high = float(vertical[0].get("y1", "nan")), float(vertical[0].get("y2", "nan"))
        assert y_low > y_high  # the low end is lower on the page
        # the dot sits between the ends as the effect sits in its interval
        share = (point.effect - point.ci_low) / (point.ci_high - point.ci_low)
        y = float(dot.get("cy", "nan"))
        assert (y_low - y) / (y_low - y_high) == pytest.approx(share, abs=0.01)


def test_several_days_still_draw_lines() -> None:
    band = Band(
        "treatment vs control", [("2025-11-24", 1.0, 0.0, 2.0), ("2025-11-25", 1.5, 1.0, 2.0)]
    )
    svg = ElementTree.fromstring(str(line_chart([band], "t", "effect (%)")))
    assert len(list(svg.iter(f"{SVG}polyline"))) == 1
    assert list(svg.iter(f"{SVG}circle")) == []


@pytest.mark.parametrize(
    ("low", "high", "labels"),
    [
        (0.0, 3000.0, ["0", "1,000", "2,000", "3,000"]),
        (0.0, 0.25, ["0.00", "0.05", "0.10", "0.15", "0.20", "0.25"]),
        (-0.3, 0.31, ["-0.2", "0.0", "0.2"]),
        (0.0001, 0.0009, ["0.0002", "0.0004", "0.0006", "0.0008"]),
    ],
)
def test_axis_labels_are_plain_decimals(low: float, high: float, labels: list[str]) -> None:
    assert [text for _, text in _tick_labels(_ticks(low, high))] == labels


@pytest.mark.parametrize("control", ["\x01", "\x1b[31m", "\ud800", "\x0c", "\uffff"])
def test_a_label_holding_a_character_xml_cannot_hold_leaves_the_chart_readable(
    control: str,
) -> None:
    """Labels come from outside (a feature name in a request, a segment value): a control
    character or a lone surrogate in one is dropped, and the chart still parses as XML."""
    label = f"f{control}<b>&"
    charts = [
        forest_plot([ForestRow(label, 0.1, 0.0, 0.2, "win", label)], label, label),
        bar_chart([Bar(label, 10.0, 12.0)], label),
    ]
    for chart in charts:
        root = ElementTree.fromstring(str(chart))
        assert root.tag.endswith("svg")
        texts = "".join(root.itertext())
        assert "f<b>&" in texts or "f[31m<b>&" in texts
