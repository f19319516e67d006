"""Per-feature drift between a reference sample and a current one, and the report over all.

Used for data drift (training data vs what is served now) and for skew between variants
(the features control saw vs those a challenger saw: with random assignment they should
match, so a difference points at a pipeline, not at the population).

Each sample is read once (:mod:`abflow.drift.columns`); the measures and their thresholds
come from one table (:data:`abflow.drift.methods.MEASURES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from abflow.drift.binning import quantile_edges, sorted_bin_counts
from abflow.drift.columns import Column, categorical_counts, is_missing, scan, sorted_numbers
from abflow.drift.measures import JsBase
from abflow.drift.measures import js_base as read_js_base
from abflow.drift.methods import MEASURES, DriftMethod, Evidence, FeatureKind, Measure
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

DEFAULT_THRESHOLDS: dict[DriftMethod, float] = {
    method: measure.default_threshold for method, measure in MEASURES.items()
}
"""Distances drift at or above the threshold; tests (ks, chi2) when p is below it (alpha)."""

AUTO_TEST_MAX_SAMPLE = 1000
"""``auto`` uses a test up to this many values in the smaller sample, a distance above it."""

AUTO_MIN_PER_CATEGORY = 100
"""... and on a categorical feature only with this many values per category: the
Jensen-Shannon distance of two samples of one distribution grows with categories per value
(200 categories, 2,000 values a side: ~0.2, over the 0.1 threshold every time)."""


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
    js_base: JsBase = JsBase.two
    """Logarithm base of the Jensen-Shannon distance (when ``js`` decides)."""

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
            "js_base": self.js_base.value,
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


def _require_values(name: str, n_reference: int, n_current: int) -> None:
    for role, n in (("reference", n_reference), ("current", n_current)):
        if n == 0:
            msg = f"feature {name!r} has no values in the {role} sample"
            raise InvalidArgumentError(msg)


def _refuse_mixed_kinds(name: str, reference: Column, current: Column) -> None:
    """Numbers in one sample and text in the other is a broken column, not a categorical
    feature: read as categories, numbers shifted by five standard deviations showed no
    drift, every number being a category of its own."""
    samples = {"reference": reference, "current": current}
    texty = [role for role, column in samples.items() if column.looks_categorical]
    if len(texty) != 1:
        return
    [role] = texty
    other = "current" if role == "reference" else "reference"
    if not _has_numbers(samples[other]):
        return
    example = _text_example(samples[role].values)
    msg = (
        f"feature {name!r} holds numbers in the {other} sample but {example!r} in the {role} "
        "sample: fix that value, or declare the feature categorical to compare both as categories"
    )
    raise InvalidArgumentError(msg)


def _text_example(values: Any) -> object:
    """The first value that is not a number, preferring text no number parser reads."""
    texts = [v for v in values if isinstance(v, str | bool) and not is_missing(v)]
    for text in texts:
        try:
            float(text)
        except ValueError:
            return text
    return texts[0] if texts else None


def _has_numbers(column: Column) -> bool:
    if isinstance(column.values, np.ndarray):
        return bool(column.values.size)
    return any(not is_missing(v) for v in column.values)


def _resolve(method: DriftMethod, kind: FeatureKind, smaller: int, bins: int) -> Measure:
    """The measure that applies; numeric-only ones give way to their categorical twin."""
    if method is DriftMethod.auto:
        small = smaller <= AUTO_TEST_MAX_SAMPLE
        if kind == "numeric":
            method = DriftMethod.ks if small else DriftMethod.wasserstein
        else:
            sparse = smaller < AUTO_MIN_PER_CATEGORY * bins
            method = DriftMethod.chi2 if small or sparse else DriftMethod.js
    measure = MEASURES[method]
    if kind not in measure.applies_to and measure.categorical_twin is not None:
        measure = MEASURES[measure.categorical_twin]
    return measure


def _evidence(
    name: str, reference: Column, current: Column, kind: FeatureKind, bins: int, base: JsBase
) -> tuple[Evidence, float, float]:
    """Counts (and sorted values for numbers) of both samples, and their missing shares."""
    if kind == "numeric":
        ref, missing_ref = sorted_numbers(name, reference, "reference")
        cur, missing_cur = sorted_numbers(name, current, "current")
        _require_values(name, ref.size, cur.size)
        edges = quantile_edges(ref, bins)
        ref_counts, cur_counts = sorted_bin_counts(ref, edges), sorted_bin_counts(cur, edges)
        return Evidence(ref_counts, cur_counts, ref, cur, base), missing_ref, missing_cur
    if kind == "categorical":
        ref_found, missing_ref = categorical_counts(reference)
        cur_found, missing_cur = categorical_counts(current)
        _require_values(name, ref_found.total(), cur_found.total())
        categories = sorted(ref_found.keys() | cur_found.keys())
        ref_counts = np.array([ref_found[c] for c in categories], dtype=np.float64)
        cur_counts = np.array([cur_found[c] for c in categories], dtype=np.float64)
        return Evidence(ref_counts, cur_counts, js_base=base), missing_ref, missing_cur
    msg = f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}"
    raise InvalidArgumentError(msg)


def _compare(
    name: str,
    reference: Column,
    current: Column,
    *,
    kind: FeatureKind,
    method: DriftMethod,
    threshold: float | None,
    bins: int,
    base: JsBase,
) -> FeatureDrift:
    evidence, missing_ref, missing_cur = _evidence(name, reference, current, kind, bins, base)
    n_ref = int(evidence.reference_counts.sum())
    n_cur = int(evidence.current_counts.sum())
    measure = _resolve(method, kind, min(n_ref, n_cur), len(evidence.reference_counts))
    limit = measure.default_threshold if threshold is None else threshold
    measure.check_threshold(name, limit)
    psi, _ = MEASURES[DriftMethod.psi].compute(evidence)
    statistic, p_value = measure.compute(evidence)
    return FeatureDrift(
        feature=name,
        kind=kind,
        method=measure.method,
        statistic=statistic,
        p_value=p_value,
        threshold=limit,
        drifted=measure.decides((statistic, p_value), limit),
        psi=psi,
        n_reference=n_ref,
        n_current=n_cur,
        missing_reference=missing_ref,
        missing_current=missing_cur,
        js_base=base,
    )


def compare_feature(
    name: str,
    reference: Sequence[Any],
    current: Sequence[Any],
    *,
    kind: FeatureKind = "numeric",
    method: DriftMethod | str = DriftMethod.auto,
    threshold: float | None = None,
    bins: int = 10,
    js_base: JsBase | str | int = JsBase.two,
) -> FeatureDrift:
    """Measure one feature's drift; ``threshold`` defaults to the method's (see the table)."""
    return _compare(
        name,
        scan(reference),
        scan(current),
        kind=kind,
        method=_method(method),
        threshold=threshold,
        bins=bins,
        base=read_js_base(js_base),
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
    js_base: JsBase | str | int = JsBase.two,
    workers: int = 1,
) -> DriftReport:
    """Compare every feature (default: those in both samples, reference order).

    Features holding text or booleans are categorical without being named in ``categorical``.
    ``js_base="e"`` measures Jensen-Shannon in natural log, as Evidently does. ``workers``
    compares that many features at once on threads (up to one per CPU is useful): numpy
    sorts and merges without holding the interpreter lock, so large numeric samples gain
    from it; the report is the same whatever the number.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        msg = f"workers must be a whole number >= 1, got {workers!r}"
        raise InvalidArgumentError(msg)
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
    chosen, base = _method(method), read_js_base(js_base)

    def verdict(name: str) -> FeatureDrift:
        ref, cur = scan(reference[name]), scan(current[name])
        if name not in categorical:
            _refuse_mixed_kinds(name, ref, cur)
        kind: FeatureKind = (
            "categorical"
            if name in categorical or ref.looks_categorical or cur.looks_categorical
            else "numeric"
        )
        return _compare(
            name, ref, cur, kind=kind, method=chosen, threshold=threshold, bins=bins, base=base
        )

    threads = min(workers, len(features))
    if threads <= 1:
        return DriftReport(tuple(verdict(name) for name in features))
    with ThreadPoolExecutor(threads, thread_name_prefix="abflow-drift") as pool:
        return DriftReport(tuple(pool.map(verdict, features)))
