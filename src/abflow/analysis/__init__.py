"""Experiment analysis: SQL aggregates of one phase → abflow.stats → results and reports.

``analyze(store, "experiment-key")`` returns an :class:`ExperimentResult`; the ``render_*``
functions turn it into a terminal table, JSON, Markdown or a self-contained HTML report.
"""

from __future__ import annotations

from abflow.analysis.engine import AnalysisOptions, analyze
from abflow.analysis.results import SCHEMA_VERSION, ExperimentResult, MetricResult

__all__ = [
    "SCHEMA_VERSION",
    "AnalysisOptions",
    "ExperimentResult",
    "MetricResult",
    "analyze",
]
