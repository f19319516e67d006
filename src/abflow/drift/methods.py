"""The drift measures, declared once: what each applies to, how it is computed and decided.

One row per measure in :data:`MEASURES` (name, kinds it applies to, function, default
threshold, direction). Validation of thresholds, the command line's choices and help, and the
computation in :mod:`abflow.drift.features` all read this table, so a new measure is one new
row (a test checks that every :class:`DriftMethod` but ``auto`` has exactly one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

import numpy as np

from abflow.drift.measures import (
    JsBase,
    chi_square_test,
    jensen_shannon,
    js_base,
    ks_test,
    population_stability_index,
    wasserstein_sorted_normed,
)
from abflow.errors import InvalidArgumentError

__all__ = [
    "MEASURES",
    "Direction",
    "DriftMethod",
    "Evidence",
    "FeatureKind",
    "JsBase",
    "Measure",
    "js_base",
]

FeatureKind = Literal["numeric", "categorical"]
Direction = Literal["p_value_below", "statistic_at_or_above"]
"""Tests drift when their p-value is below the threshold (alpha); distances at or above it."""


class DriftMethod(StrEnum):
    """What decides whether a feature drifted: a measure of :data:`MEASURES`, or ``auto``."""

    auto = "auto"
    psi = "psi"
    ks = "ks"
    chi2 = "chi2"
    js = "js"
    wasserstein = "wasserstein"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the measures read for one feature: counts per bin or category in both samples,
    and for a numeric feature the present values themselves, sorted ascending."""

    reference_counts: np.ndarray
    current_counts: np.ndarray
    reference_sorted: np.ndarray | None = None
    current_sorted: np.ndarray | None = None
    js_base: JsBase = JsBase.two

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        if self.reference_sorted is None or self.current_sorted is None:
            msg = "this measure needs the values of a numeric feature, not category counts"
            raise InvalidArgumentError(msg)
        return self.reference_sorted, self.current_sorted


Outcome = tuple[float, float | None]
"""The statistic, and the p-value for a test (None for a distance)."""


@dataclass(frozen=True, slots=True)
class Measure:
    """One drift measure: a row of the table."""

    method: DriftMethod
    label: str
    """What it measures, in a few words (command-line help and docs)."""
    applies_to: frozenset[FeatureKind]
    compute: Callable[[Evidence], Outcome]
    default_threshold: float
    direction: Direction
    categorical_twin: DriftMethod | None = None
    """Stands in on a categorical feature when this one applies to numbers only: a test
    stays a test and a distance a distance, so one method works on mixed columns."""

    @property
    def is_test(self) -> bool:
        return self.direction == "p_value_below"

    def check_threshold(self, feature: str, threshold: float) -> None:
        """Refuse a threshold this measure cannot be decided by (named in the message)."""
        if not math.isfinite(threshold) or threshold < 0:
            msg = f"threshold must be a finite number >= 0, got {threshold}"
            raise InvalidArgumentError(msg)
        if self.is_test and not 0 < threshold < 1:
            msg = (
                f"feature {feature!r} is decided by the {self.method.value} test, whose "
                f"threshold is a significance level between 0 and 1 (exclusive), got {threshold}"
            )
            raise InvalidArgumentError(msg)

    def decides(self, outcome: Outcome, threshold: float) -> bool:
        statistic, p_value = outcome
        if self.is_test:
            return p_value is not None and p_value < threshold
        return statistic >= threshold

    def describe(self) -> str:
        """``ks: two-sample Kolmogorov-Smirnov test (numeric; chi2 on categories), drift when
        p < 0.05`` (help text and docs)."""
        rule = "p <" if self.is_test else ">="
        twin = self.categorical_twin
        kinds = f" (numeric; {twin.value} on categories)" if twin is not None else ""
        return f"{self.method.value}: {self.label}{kinds}, drift when {rule} {self.default_threshold:g}"


def _psi(evidence: Evidence) -> Outcome:
    return population_stability_index(evidence.reference_counts, evidence.current_counts), None


def _js(evidence: Evidence) -> Outcome:
    distance = jensen_shannon(
        evidence.reference_counts, evidence.current_counts, base=evidence.js_base
    )
    return distance, None


def _chi2(evidence: Evidence) -> Outcome:
    test = chi_square_test(evidence.reference_counts, evidence.current_counts)
    return test.statistic, test.p_value


def _ks(evidence: Evidence) -> Outcome:
    test = ks_test(*evidence.samples())
    return test.statistic, test.p_value


def _wasserstein(evidence: Evidence) -> Outcome:
    return wasserstein_sorted_normed(*evidence.samples()), None


_BOTH: frozenset[FeatureKind] = frozenset({"numeric", "categorical"})
_NUMERIC: frozenset[FeatureKind] = frozenset({"numeric"})

MEASURES: Mapping[DriftMethod, Measure] = MappingProxyType(
    {
        measure.method: measure
        for measure in (
            Measure(
                DriftMethod.psi,
                "population stability index over bins",
                _BOTH,
                _psi,
                0.2,
                "statistic_at_or_above",
            ),
            Measure(
                DriftMethod.js,
                "Jensen-Shannon distance of the binned shares",
                _BOTH,
                _js,
                0.1,
                "statistic_at_or_above",
            ),
            Measure(
                DriftMethod.wasserstein,
                "earth mover's distance in reference standard deviations",
                _NUMERIC,
                _wasserstein,
                0.1,
                "statistic_at_or_above",
                categorical_twin=DriftMethod.js,
            ),
            Measure(
                DriftMethod.ks,
                "two-sample Kolmogorov-Smirnov test",
                _NUMERIC,
                _ks,
                0.05,
                "p_value_below",
                categorical_twin=DriftMethod.chi2,
            ),
            Measure(
                DriftMethod.chi2,
                "Pearson's chi-square test of homogeneity",
                _BOTH,
                _chi2,
                0.05,
                "p_value_below",
            ),
        )
    }
)
"""Every measure, by method. ``auto`` is not a measure: it picks one (see ``features``)."""
