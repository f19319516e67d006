"""Statistics engine: pure functions on sufficient statistics (numpy and scipy only, no I/O).

Analysis aggregates events into :class:`SampleStats` (or ratio / CUPED statistics) in SQL and
calls :func:`compare`; every result is a plain :class:`Comparison` record.
"""

from __future__ import annotations

from abflow.stats.compare import compare, compare_many
from abflow.stats.corrections import adjust_comparisons, adjust_mapping, adjust_p_values
from abflow.stats.paired import (
    McNemarResult,
    PairedDifference,
    mcnemar,
    paired_mean_difference,
)
from abflow.stats.power import (
    MdeResult,
    PowerResult,
    SampleSizeResult,
    duration_days,
    mde,
    power,
    sample_size,
)
from abflow.stats.quantile import (
    QuantileStats,
    compare_quantile_stats,
    compare_quantiles,
    quantile_probabilities,
    quantile_stats,
    quantile_stats_from_bins,
    quantile_stats_from_histogram,
)
from abflow.stats.records import Comparison, GaussianPrior, SampleStats
from abflow.stats.srm import SrmResult, srm_test
from abflow.stats.sufficient import CupedStats, RatioCupedStats, RatioStats

__all__ = [
    "Comparison",
    "CupedStats",
    "GaussianPrior",
    "McNemarResult",
    "MdeResult",
    "PairedDifference",
    "PowerResult",
    "QuantileStats",
    "RatioCupedStats",
    "RatioStats",
    "SampleSizeResult",
    "SampleStats",
    "SrmResult",
    "adjust_comparisons",
    "adjust_mapping",
    "adjust_p_values",
    "compare",
    "compare_many",
    "compare_quantile_stats",
    "compare_quantiles",
    "duration_days",
    "mcnemar",
    "mde",
    "paired_mean_difference",
    "power",
    "quantile_probabilities",
    "quantile_stats",
    "quantile_stats_from_bins",
    "quantile_stats_from_histogram",
    "sample_size",
    "srm_test",
]
