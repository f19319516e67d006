"""Drift and skew between feature distributions: pure functions, no I/O.

``detect_drift(reference, current)`` takes two column mappings (name → values) and returns a
:class:`DriftReport` with one verdict per feature. The measures are importable on their own,
and :data:`MEASURES` is their table (applies to, default threshold, direction).
"""

from __future__ import annotations

from abflow.drift.features import (
    AUTO_MIN_PER_CATEGORY,
    AUTO_TEST_MAX_SAMPLE,
    DEFAULT_THRESHOLDS,
    DriftMethod,
    DriftReport,
    FeatureDrift,
    FeatureKind,
    compare_feature,
    detect_drift,
)
from abflow.drift.measures import (
    PSI_FLOOR,
    JsBase,
    TestResult,
    chi_square_test,
    jensen_shannon,
    ks_test,
    population_stability_index,
    wasserstein_normed,
)
from abflow.drift.methods import MEASURES, Measure

__all__ = [
    "AUTO_MIN_PER_CATEGORY",
    "AUTO_TEST_MAX_SAMPLE",
    "DEFAULT_THRESHOLDS",
    "MEASURES",
    "PSI_FLOOR",
    "DriftMethod",
    "DriftReport",
    "FeatureDrift",
    "FeatureKind",
    "JsBase",
    "Measure",
    "TestResult",
    "chi_square_test",
    "compare_feature",
    "detect_drift",
    "jensen_shannon",
    "ks_test",
    "population_stability_index",
    "wasserstein_normed",
]
