"""Per-feature drift between a reference sample and a current one, and the report over all.

Used for data drift (training data vs what is served now) and for skew between variants
(the features control saw vs those a challenger saw: with random assignment they should
match, so a difference points at a pipeline, not at the population).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from abflow.drift.binning import bin_counts, category_counts, quantile_edges
from abflow.drift.measures import (
    chi_square_test,
    jensen_shannon,
    ks_test,
    population_stability_index,
    wasserstein_normed,
)
from abflow.errors import InvalidArgumentError

__all__ = [
    "AUTO_MIN_PER_CATEGORY",
    "AUTO_TEST_MAX_SAMPLE",
    "DEFAULT_THRESHOLDS",
    "DriftMethod",
    "DriftReport",
    "FeatureDrift",
    "FeatureKind",
    "compare_feature",
    "detect_drift",
]

FeatureKind = Literal["numeric", "categorical"]


class DriftMethod(StrEnum):
    """What decides whether a feature drifted."""

    auto = "auto"
    psi = "psi"
    ks = "ks"
    chi2 = "chi2"
    js = "js"
    wasserstein = "wasserstein"


DEFAULT_THRESHOLDS: dict[DriftMethod, float] = {
    DriftMethod.psi: 0.2,
    DriftMethod.ks: 0.05,
    DriftMethod.chi2: 0.05,
    DriftMethod.js: 0.1,
    DriftMethod.wasserstein: 0.1,
}
"""Distances drift at or above the threshold; tests (ks, chi2) when p is below it (alpha)."""

AUTO_TEST_MAX_SAMPLE = 1000
"""``auto`` uses a test up to this many values in the smaller sample, a distance above it."""

AUTO_MIN_PER_CATEGORY = 100
"""... and on a categorical feature only with this many values per category: the
Jensen-Shannon distance of two samples of one distribution grows with categories per value
(200 categories, 2,000 values a side: ~0.2, over the 0.1 threshold every time)."""

_TESTS = {DriftMethod.ks, DriftMethod.chi2}
_CATEGORICAL_TWIN = {DriftMethod.ks: DriftMethod.chi2, DriftMethod.wasserstein: DriftMethod.js}
"""A test stays a test and a distance a distance when a feature turns out categorical."""


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's verdict, with what it was measured on."""

    feature: str
    kind: FeatureKind
    method: DriftMethod
    statistic: float
    """The distance, or the test statistic for ks and chi2."""
    p_value: float | None
    """Only for the tests (ks, chi2)."""
    threshold: float
    drifted: bool
    psi: float
    """Always computed: the number most teams already know how to read."""
    n_reference: int
    n_current: int
    missing_reference: float
    """Share of missing values (None, NaN, empty), left out of every measure."""
    missing_current: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "method": self.method.value,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "psi": self.psi,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "missing_reference": self.missing_reference,
            "missing_current": self.missing_current,
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every feature's verdict, in the order the features were given."""

    features: tuple[FeatureDrift, ...]

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(f.feature for f in self.features if f.drifted)

    @property
    def share_drifted(self) -> float:
        return len(self.drifted) / len(self.features) if self.features else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "features": [f.as_dict() for f in self.features],
            "drifted": list(self.drifted),
            "share_drifted": self.share_drifted,
        }


def _looks_categorical(*samples: Sequence[Any]) -> bool:
    """Text or booleans anywhere make a feature categorical (numbers read from text are not)."""
    return any(isinstance(v, str | bool) and v != "" for sample in samples for v in sample)


def _is_missing(value: object) -> bool:
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and value == "")


def _numeric(name: str, values: Sequence[Any], role: str) -> tuple[np.ndarray, float]:
    present = [v for v in values if not _is_missing(v)]
    try:
        array = np.asarray(present, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.empty((0, 0))
    if array.ndim != 1:  # lists or objects (JSON arrays) that numpy would read as a matrix
        msg = (
            f"feature {name!r} in the {role} sample holds values that are not numbers; "
            "declare it categorical"
        )
        raise InvalidArgumentError(msg)
    if array.size and not np.all(np.isfinite(array)):
        msg = f"feature {name!r} in the {role} sample holds infinite values"
        raise InvalidArgumentError(msg)
    return array, _missing_share(len(values), array.size)


def _categorical(values: Sequence[Any]) -> tuple[list[str], float]:
    present = [str(v) for v in values if not _is_missing(v)]
    return present, _missing_share(len(values), len(present))


def _missing_share(total: int, present: int) -> float:
    return (total - present) / total if total else 0.0


def _require_values(name: str, n_reference: int, n_current: int) -> None:
    for role, n in (("reference", n_reference), ("current", n_current)):
        if n == 0:
            msg = f"feature {name!r} has no values in the {role} sample"
            raise InvalidArgumentError(msg)


def _resolve(method: DriftMethod, kind: FeatureKind, smaller: int, bins: int) -> DriftMethod:
    """The method that applies; numeric-only methods give way to their categorical twin."""
    if method is DriftMethod.auto:
        small = smaller <= AUTO_TEST_MAX_SAMPLE
        if kind == "numeric":
            return DriftMethod.ks if small else DriftMethod.wasserstein
        sparse = smaller < AUTO_MIN_PER_CATEGORY * bins
        return DriftMethod.chi2 if small or sparse else DriftMethod.js
    if kind == "categorical":
        return _CATEGORICAL_TWIN.get(method, method)
    return method


def compare_feature(
    name: str,
    reference: Sequence[Any],
    current: Sequence[Any],
    *,
    kind: FeatureKind = "numeric",
    method: DriftMethod | str = DriftMethod.auto,
    threshold: float | None = None,
    bins: int = 10,
) -> FeatureDrift:
    """Measure one feature's drift; ``threshold`` defaults to the method's (see the table)."""
    method = _method(method)
    if kind == "numeric":
        ref, missing_ref = _numeric(name, reference, "reference")
        cur, missing_cur = _numeric(name, current, "current")
        _require_values(name, ref.size, cur.size)
        edges = quantile_edges(ref, bins)
        ref_counts, cur_counts = bin_counts(ref, edges), bin_counts(cur, edges)
        n_ref, n_cur = ref.size, cur.size
    elif kind == "categorical":
        ref_values, missing_ref = _categorical(reference)
        cur_values, missing_cur = _categorical(current)
        _require_values(name, len(ref_values), len(cur_values))
        _, ref_counts, cur_counts = category_counts(ref_values, cur_values)
        n_ref, n_cur = len(ref_values), len(cur_values)
    else:
        msg = f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}"
        raise InvalidArgumentError(msg)
    chosen = _resolve(method, kind, min(n_ref, n_cur), len(ref_counts))
    limit = DEFAULT_THRESHOLDS[chosen] if threshold is None else threshold
    if not math.isfinite(limit) or limit < 0:
        msg = f"threshold must be a finite number >= 0, got {limit}"
        raise InvalidArgumentError(msg)
    if chosen in _TESTS and not 0 < limit < 1:
        msg = (
            f"feature {name!r} is decided by the {chosen.value} test, whose threshold is a "
            f"significance level between 0 and 1 (exclusive), got {limit}"
        )
        raise InvalidArgumentError(msg)
    psi = population_stability_index(ref_counts, cur_counts)
    p_value: float | None = None
    if chosen is DriftMethod.psi:
        statistic = psi
    elif chosen is DriftMethod.js:
        statistic = jensen_shannon(ref_counts, cur_counts)
    elif chosen is DriftMethod.chi2:
        test = chi_square_test(ref_counts, cur_counts)
        statistic, p_value = test.statistic, test.p_value
    elif chosen is DriftMethod.ks:
        test = ks_test(ref, cur)
        statistic, p_value = test.statistic, test.p_value
    else:
        statistic = wasserstein_normed(ref, cur)
    drifted = p_value < limit if chosen in _TESTS and p_value is not None else statistic >= limit
    return FeatureDrift(
        feature=name,
        kind=kind,
        method=chosen,
        statistic=statistic,
        p_value=p_value,
        threshold=limit,
        drifted=bool(drifted),
        psi=psi,
        n_reference=int(n_ref),
        n_current=int(n_cur),
        missing_reference=missing_ref,
        missing_current=missing_cur,
    )


def _method(method: DriftMethod | str) -> DriftMethod:
    try:
        return DriftMethod(method)
    except ValueError:
        names = ", ".join(m.value for m in DriftMethod)
        msg = f"unknown drift method {method!r}; methods are {names}"
        raise InvalidArgumentError(msg) from None


def detect_drift(
    reference: Mapping[str, Sequence[Any]],
    current: Mapping[str, Sequence[Any]],
    *,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    method: DriftMethod | str = DriftMethod.auto,
    threshold: float | None = None,
    bins: int = 10,
) -> DriftReport:
    """Compare every feature (default: those in both samples, reference order).

    Features holding text or booleans are categorical without being named in ``categorical``.
    """
    if features is None:
        features = [name for name in reference if name in current]
        if not features:
            msg = "the reference and current samples share no feature (column) names"
            raise InvalidArgumentError(msg)
    for name in features:
        for role, sample in (("reference", reference), ("current", current)):
            if name not in sample:
                msg = f"feature {name!r} is not in the {role} sample"
                raise InvalidArgumentError(msg)
    unknown = [name for name in categorical if name not in features]
    if unknown:
        msg = f"categorical feature {unknown[0]!r} is not among the compared features"
        raise InvalidArgumentError(msg)
    wanted = set(categorical) | {
        name for name in features if _looks_categorical(reference[name], current[name])
    }
    return DriftReport(
        tuple(
            compare_feature(
                name,
                reference[name],
                current[name],
                kind="categorical" if name in wanted else "numeric",
                method=method,
                threshold=threshold,
                bins=bins,
            )
            for name in features
        )
    )
