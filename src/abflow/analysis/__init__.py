"""Experiment analysis: SQL aggregates of one phase → abflow.stats → results and reports.

``analyze(store, "experiment-key")`` returns an :class:`ExperimentResult`; the ``render_*``
functions turn it into a terminal table, JSON, Markdown or a self-contained HTML report.
"""

from __future__ import annotations

from abflow.analysis.engine import analyze
from abflow.analysis.report_html import render_html
from abflow.analysis.report_text import render_json, render_markdown, render_table
from abflow.analysis.results import SCHEMA_VERSION, ExperimentResult, MetricResult
from abflow.analysis.run import AnalysisOptions

__all__ = [
    "SCHEMA_VERSION",
    "AnalysisOptions",
    "ExperimentResult",
    "MetricResult",
    "analyze",
    "render_html",
    "render_json",
    "render_markdown",
    "render_table",
]
