"""Small inline SVG charts for the HTML report: no CDN, no JavaScript, readable offline.

Each function returns one ``<svg>`` element as ``Markup``: text is escaped here, so the
report's autoescaping template inserts the chart as it is. Coordinates are computed here from
the data's range. The charts are the four a reader of an experiment needs:
effects with intervals, cumulative effect over time, assignment counts, latency histograms.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

__all__ = [
    "Band",
    "Bar",
    "ForestRow",
    "Series",
    "bar_chart",
    "forest_plot",
    "line_chart",
    "step_chart",
]

_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters XML 1.0 does not allow: one in a label (a feature name from a request) would
make the whole chart unreadable to an XML parser, and the dashboard drops such a chart."""


def escape(text: str) -> str:
    """``text`` for an SVG text node or attribute: escaped, less what XML cannot hold."""
    return html.escape(_NOT_IN_XML.sub("", text))


PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
_OUTCOME_COLOURS = {
    "better": "#2e7d32",
    "pass": "#2e7d32",
    "worse": "#c62828",
    "fail": "#c62828",
    "inconclusive": "#6d6d6d",
    "error": "#8e24aa",
}


@dataclass(frozen=True, slots=True)
class ForestRow:
    label: str
    effect: float
    low: float
    high: float
    status: str
    text: str


@dataclass(frozen=True, slots=True)
class Band:
    """A line with an optional shaded interval: ``(x label, y, low, high)`` points."""

    name: str
    points: Sequence[tuple[str, float, float, float]]


@dataclass(frozen=True, slots=True)
class Series:
    """A step line of ``(x, y)`` points, e.g. a histogram."""

    name: str
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    expected: float | None = None


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _span(values: Sequence[float], include_zero: bool = True) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if include_zero:
        finite.append(0.0)
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high == low:
        high, low = high + 1.0, low - 1.0
    pad = (high - low) * 0.08
    return low - pad, high + pad


def _svg(width: int, height: int, body: list[str], title: str) -> Markup:
    return Markup(  # every text in body was escaped where it was built
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def forest_plot(rows: Sequence[ForestRow], title: str, axis_label: str) -> Markup:
    """Effects as dots with interval whiskers around a zero line, one row per comparison."""
    longest = max((len(r.label) for r in rows), default=0)
    left = max(230, min(420, 16 + round(6.8 * longest)))  # room for the labels, 12 px text
    width, right, row_h, top = 530 + left, 150, 28, 30
    height = top + row_h * max(len(rows), 1) + 34
    low, high = _span([v for r in rows for v in (r.low, r.high, r.effect)])

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (width - left - right)

    body = [
        f'<line x1="{x(0):.1f}" y1="{top - 8}" x2="{x(0):.1f}" y2="{height - 30}" '
        'stroke="#999" stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{top - 12}" font-size="11" text-anchor="middle" '
        'fill="#666">no change</text>',
    ]
    for i, row in enumerate(rows):
        y = top + row_h * i + row_h / 2
        colour = _OUTCOME_COLOURS.get(row.status, "#333")
        body.append(
            f'<text x="{left - 10}" y="{y + 4:.1f}" font-size="12" text-anchor="end">'
            f"{escape(row.label)}</text>"
        )
        if _finite(row.low, row.high, row.effect):
            body.append(
                f'<line x1="{x(row.low):.1f}" y1="{y:.1f}" x2="{x(row.high):.1f}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
                f'<circle cx="{x(row.effect):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>'
            )
        body.append(
            f'<text x="{width - right + 8}" y="{y + 4:.1f}" font-size="11" fill="{colour}">'
            f"{escape(row.text)}</text>"
        )
    for tick, text in _tick_labels(_ticks(low, high)):
        body.append(
            f'<text x="{x(tick):.1f}" y="{height - 14}" font-size="10" text-anchor="middle" '
            f'fill="#666">{text}</text>'
        )
    body.append(
        f'<text x="{(left + width - right) / 2:.1f}" y="{height - 1}" font-size="11" '
        f'text-anchor="middle" fill="#444">{escape(axis_label)}</text>'
    )
    return _svg(width, height, body, title)


def _tick_labels(ticks: list[float]) -> list[tuple[float, str]]:
    """Each tick with its label, written with the decimals its step needs (``0.25``,
    ``1,000``): no exponent notation, no float noise like ``0.30000000000000004``."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    if round(step * 10**decimals, 6) % 1:  # a step of 0.25 needs two decimals, not one
        decimals += 1
    labels = []
    for tick in ticks:
        value = 0.0 if abs(tick) < step / 2 else tick
        labels.append((tick, f"{value:,.{decimals}f}"))
    return labels


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw)
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step) + 1)]


def line_chart(bands: Sequence[Band], title: str, y_label: str, zero_line: bool = True) -> Markup:
    """Lines over categorical x (days) with shaded intervals: cumulative effect over time.

    A single x (every unit exposed on one day) has no line to draw: each band is then a dot
    with its interval as a whisker, at the middle of the chart, so the chart is never empty.
    """
    width, height, left, bottom, top, right = 760, 240, 60, 40, 20, 20
    xs = sorted({p[0] for band in bands for p in band.points})
    values = [v for band in bands for p in band.points for v in p[1:]]
    low, high = _span(values, include_zero=zero_line)
    n = max(len(xs) - 1, 1)
    is_single = len(xs) == 1

    def px(label: str) -> float:
        if is_single:
            return left + (width - left - right) / 2
        return left + xs.index(label) / n * (width - left - right)

    def py(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    body: list[str] = []
    if zero_line and low < 0 < high:
        body.append(
            f'<line x1="{left}" y1="{py(0):.1f}" x2="{width - right}" y2="{py(0):.1f}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
        )
    for i, band in enumerate(bands):
        colour = PALETTE[i % len(PALETTE)]
        pts = [p for p in band.points if _finite(p[1], p[2], p[3])]
        if not pts:
            continue
        if is_single:
            body.append(
                _whisker(
                    px(pts[0][0]) + 14 * i, py(pts[0][1]), py(pts[0][2]), py(pts[0][3]), colour
                )
            )
        else:
            upper = " ".join(f"{px(p[0]):.1f},{py(p[3]):.1f}" for p in pts)
            lower = " ".join(f"{px(p[0]):.1f},{py(p[2]):.1f}" for p in reversed(pts))
            line = " ".join(f"{px(p[0]):.1f},{py(p[1]):.1f}" for p in pts)
            body.append(
                f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.18"/>'
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        body.append(
            f'<text x="{left + 8}" y="{top + 14 + 14 * i}" font-size="11" fill="{colour}">'
            f"{escape(band.name)}</text>"
        )
    for label in xs if len(xs) <= 10 else xs[:: math.ceil(len(xs) / 10)]:
        anchor = "end" if label == xs[-1] and not is_single else "middle"  # stays in view
        body.append(
            f'<text x="{px(label):.1f}" y="{height - bottom + 16}" font-size="10" '
            f'text-anchor="{anchor}" fill="#666">{escape(label[5:])}</text>'
        )
    for tick, text in _tick_labels(_ticks(low, high)):
        body.append(
            f'<text x="{left - 6}" y="{py(tick) + 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="#666">{text}</text>'
        )
    body.append(
        f'<text x="12" y="{(top + height - bottom) / 2:.0f}" font-size="11" fill="#444" '
        f'transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    return _svg(width, height, body, title)


def _whisker(x: float, y: float, y_low: float, y_high: float, colour: str) -> str:
    """A dot at ``y`` with a vertical interval from ``y_low`` to ``y_high`` and end caps."""
    caps = "".join(
        f'<line x1="{x - 6:.1f}" y1="{end:.1f}" x2="{x + 6:.1f}" y2="{end:.1f}" '
        f'stroke="{colour}" stroke-width="2"/>'
        for end in (y_low, y_high)
    )
    return (
        f'<line x1="{x:.1f}" y1="{y_low:.1f}" x2="{x:.1f}" y2="{y_high:.1f}" '
        f'stroke="{colour}" stroke-width="2"/>{caps}'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>'
    )


def step_chart(series: Sequence[Series], title: str, x_label: str) -> Markup:
    """Overlaid step lines (histograms) on a shared numeric x axis.

    A series of one point (every value in one bin) is drawn as a spike with a dot, since a
    one-point line shows nothing.
    """
    width, height, left, bottom, top, right = 760, 220, 50, 40, 16, 20
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_high == x_low:
        x_low, x_high = x_low - 0.5, x_high + 0.5
    y_high = max(ys, default=1.0) or 1.0

    def px(value: float) -> float:
        return left + (value - x_low) / (x_high - x_low) * (width - left - right)

    def py(value: float) -> float:
        return height - bottom - value / y_high * (height - top - bottom)

    body: list[str] = []
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if len(s.points) == 1:
            (x, y), base = s.points[0], py(0.0)
            body.append(
                f'<line x1="{px(x):.1f}" y1="{base:.1f}" x2="{px(x):.1f}" y2="{py(y):.1f}" '
                f'stroke="{colour}" stroke-width="3"/>'
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}"/>'
            )
        body.append(
            f'<text x="{width - right - 4}" y="{top + 12 + 14 * i}" font-size="11" '
            f'text-anchor="end" fill="{colour}">{escape(s.name)}</text>'
        )
    for tick, text in _tick_labels(_ticks(x_low, x_high)):
        body.append(
            f'<text x="{px(tick):.1f}" y="{height - bottom + 14}" font-size="10" '
            f'text-anchor="middle" fill="#666">{text}</text>'
        )
    body.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" font-size="11" '
        f'text-anchor="middle" fill="#444">{escape(x_label)}</text>'
    )
    return _svg(width, height, body, title)


def bar_chart(bars: Sequence[Bar], title: str, colour: str = PALETTE[0]) -> Markup:
    """Horizontal bars with a tick at the expected value (assignment counts vs weights)."""
    width, left, right, row_h, top = 760, 160, 120, 30, 10
    height = top + row_h * max(len(bars), 1) + 10
    high = max([b.value for b in bars] + [b.expected or 0.0 for b in bars] + [1.0]) * 1.05

    def x(value: float) -> float:
        return left + value / high * (width - left - right)

    body: list[str] = []
    for i, bar in enumerate(bars):
        y = top + row_h * i
        body.append(
            f'<text x="{left - 10}" y="{y + 18}" font-size="12" text-anchor="end">'
            f"{escape(bar.label)}</text>"
            f'<rect x="{left}" y="{y + 5}" width="{x(bar.value) - left:.1f}" height="18" '
            f'fill="{colour}"/>'
            f'<text x="{x(bar.value) + 6:.1f}" y="{y + 18}" font-size="11">{bar.value:,.0f}</text>'
        )
        if bar.expected is not None:
            body.append(
                f'<line x1="{x(bar.expected):.1f}" y1="{y + 1}" x2="{x(bar.expected):.1f}" '
                f'y2="{y + 27}" stroke="#222" stroke-width="2"><title>expected '
                f"{bar.expected:,.0f}</title></line>"
            )
    return _svg(width, height, body, title)
