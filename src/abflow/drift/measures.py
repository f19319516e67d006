"""Distances and tests between two distributions of one feature (pure numpy/scipy).

Each answers a different question: PSI and Jensen-Shannon measure how far the binned shares
moved (bounded, comparable across features), the normalised Wasserstein distance how far the
values moved in units of the feature's spread, and the Kolmogorov-Smirnov and chi-square
tests whether a difference is more than sampling noise (with large samples they flag even
negligible shifts, which is why distances are the default there).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats as sps

from abflow.errors import InvalidArgumentError

__all__ = [
    "PSI_FLOOR",
    "JsBase",
    "TestResult",
    "chi_square_test",
    "jensen_shannon",
    "js_base",
    "ks_test",
    "population_stability_index",
    "wasserstein_normed",
    "wasserstein_sorted_normed",
]

PSI_FLOOR = 1e-4
"""Share given to an empty bin, so that PSI stays finite (log of zero otherwise)."""


class JsBase(StrEnum):
    """Logarithm base of the Jensen-Shannon distance.

    ``2`` (abflow's default) bounds the distance by 1; ``e`` is Evidently's and SciPy's
    default, smaller by a factor sqrt(ln 2) (abflow's base-2 distance is 1.201 times it), so
    that thresholds carried over from Evidently keep their meaning.
    """

    two = "2"
    e = "e"


def js_base(value: JsBase | str | int) -> JsBase:
    """Read a base given as ``2``, ``"2"``, ``"e"`` or a :class:`JsBase`."""
    try:
        return JsBase(str(value))
    except ValueError:
        msg = f"js_base must be 2 or e, got {value!r}"
        raise InvalidArgumentError(msg) from None


@dataclass(frozen=True, slots=True)
class TestResult:
    """A test statistic and its p-value."""

    statistic: float
    p_value: float


def _shares(counts: np.ndarray, name: str) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        msg = f"{name} must be a non-empty 1-D array of counts"
        raise InvalidArgumentError(msg)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        msg = f"{name} must hold finite, non-negative counts"
        raise InvalidArgumentError(msg)
    total = float(counts.sum())
    if total <= 0:
        msg = f"{name} is empty (all counts are zero)"
        raise InvalidArgumentError(msg)
    shares: np.ndarray = counts / total
    return shares


def _paired_shares(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = _shares(reference, "reference counts")
    cur = _shares(current, "current counts")
    if ref.shape != cur.shape:
        msg = f"reference and current have {ref.size} and {cur.size} bins; they must match"
        raise InvalidArgumentError(msg)
    return ref, cur


def population_stability_index(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI = Σ (c - r) · ln(c / r) over bins, empty bins counted as :data:`PSI_FLOOR`.

    Rule of thumb: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one.
    """
    ref, cur = _paired_shares(reference_counts, current_counts)
    ref = np.maximum(ref, PSI_FLOOR)
    cur = np.maximum(cur, PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(
    reference_counts: np.ndarray, current_counts: np.ndarray, *, base: JsBase | str | int = 2
) -> float:
    """Jensen-Shannon distance (square root of the divergence): 0 same, 1 disjoint in base 2.

    ``base="e"`` gives Evidently's and SciPy's distance (disjoint: sqrt(ln 2) = 0.833).
    """
    log = np.log2 if js_base(base) is JsBase.two else np.log
    ref, cur = _paired_shares(reference_counts, current_counts)
    mid = (ref + cur) / 2

    def kl(p: np.ndarray) -> float:
        held = p > 0
        return float(np.sum(p[held] * log(p[held] / mid[held])))

    divergence = max((kl(ref) + kl(cur)) / 2, 0.0)
    return float(min(np.sqrt(divergence), np.sqrt(log(2.0))))


def _sample(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        msg = f"{name} must be a non-empty 1-D array of numbers"
        raise InvalidArgumentError(msg)
    if not np.all(np.isfinite(array)):
        msg = f"{name} holds NaN or infinite values; drop or impute them first"
        raise InvalidArgumentError(msg)
    return array


def ks_test(reference: np.ndarray, current: np.ndarray) -> TestResult:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two empirical CDFs."""
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    with warnings.catch_warnings():
        # Where the exact distribution cannot be computed scipy falls back to the asymptotic
        # one and says so; that fallback is the documented behaviour, not a problem.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.ks_2samp(ref, cur)
    return TestResult(float(result.statistic), float(result.pvalue))


def chi_square_test(reference_counts: np.ndarray, current_counts: np.ndarray) -> TestResult:
    """Pearson's chi-square test of homogeneity on a 2 x k table of category counts.

    Both samples are treated as samples (not the reference as the truth). Categories absent
    from both are dropped; with a single category left there is nothing to test (p = 1).
    """
    _paired_shares(reference_counts, current_counts)
    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return TestResult(0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return TestResult(statistic, float(sps.chi2.sf(statistic, dof)))


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance between the samples, in standard deviations of the reference.

    A constant reference has no spread to measure in; the pooled standard deviation is used
    then (it is zero only when both samples are the same constant, and so is the distance).
    """
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    return wasserstein_sorted_normed(np.sort(ref), np.sort(cur))


_MERGE_BLOCK = 8192
"""Merged values per step of the Wasserstein walk: the step's temporaries stay in cache and
below the allocator's mmap threshold (temporaries of the whole 2M-value merge cost a third
more CPU, mostly faulting in fresh pages)."""


def wasserstein_sorted_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """:func:`wasserstein_normed` of samples already sorted ascending (finite, non-empty).

    The distance is the area between the two empirical CDFs, as SciPy computes it; merging
    two sorted runs (a stable sort finds and merges them in linear time) replaces SciPy's
    sort of the pooled sample and its two binary searches per value.
    """
    n_ref, n_cur = reference.size, current.size
    pooled = np.concatenate([reference, current])
    order = np.argsort(pooled, kind="stable")
    distance, ref_so_far = 0.0, 0
    for start in range(0, pooled.size - 1, _MERGE_BLOCK):
        index = order[start : start + _MERGE_BLOCK + 1]
        # Values of each sample at or below each merged value. Among tied values only the
        # last one's gap to the next value is non-zero, and there both counts include every
        # tied value, as SciPy's searchsorted(side="right") does.
        ref_at_or_below = np.cumsum(index[:-1] < n_ref) + ref_so_far
        ref_so_far = int(ref_at_or_below[-1])
        cur_at_or_below = np.arange(start + 1, start + index.size) - ref_at_or_below
        gaps = np.abs(ref_at_or_below / n_ref - cur_at_or_below / n_cur)
        distance += float(np.dot(gaps, np.diff(pooled[index])))
    scale = float(np.std(reference))
    if scale == 0.0:
        scale = float(np.std(pooled))
    return 0.0 if scale == 0.0 else distance / scale
