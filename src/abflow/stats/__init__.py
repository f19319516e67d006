"""Statistics engine: pure functions on sufficient statistics (numpy and scipy only, no I/O).

Analysis aggregates events into :class:`SampleStats` (or ratio / CUPED statistics) in SQL and
calls :func:`compare`; every result is a plain :class:`Comparison` record.
"""

from __future__ import annotations

from abflow.stats.compare import compare, compare_many
from abflow.stats.records import Comparison, GaussianPrior, SampleStats
from abflow.stats.sufficient import CupedStats, RatioCupedStats, RatioStats

__all__ = [
    "Comparison",
    "CupedStats",
    "GaussianPrior",
    "RatioCupedStats",
    "RatioStats",
    "SampleStats",
    "compare",
    "compare_many",
]
