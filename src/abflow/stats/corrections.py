"""Multiple-testing corrections: adjusted p-values over a family the caller names.

Testing many metrics or variants at alpha each makes some false positive likely; adjusting
the p-values of the family restores the promise. Which tests form the family is a decision
(all primary metrics? every variant of one metric?), so the caller passes the family
explicitly and nothing is adjusted behind its back.

- ``"holm"`` (Holm-Bonferroni) controls the family-wise error rate (no false positive at
  all, with probability ``1 - alpha``) under any dependence. Sorted ``p_(1) <= … <= p_(m)``:
  ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``. Uniformly more powerful than
  Bonferroni; use it for guardrails and decisions that ship.
- ``"benjamini-hochberg"`` controls the false discovery rate (the expected share of false
  positives among the rejections) for independent or positively dependent tests:
  ``adj_(i) = min_{j >= i} min(1, m p_(j) / j)``. Use it for many exploratory metrics.
- ``"bonferroni"`` ``min(1, m p)``, and ``"none"`` (returns the p-values unchanged).

Missing p-values (``None``: Bayesian results; NaN: degenerate results) are not part of the
family and come back as they went in, so a report's order and shape never change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Literal, TypeVar, overload

import numpy as np

from abflow.errors import InvalidArgumentError
from abflow.stats.records import Comparison
from abflow.stats.validation import real_number

__all__ = [
    "CorrectionMethod",
    "adjust_comparisons",
    "adjust_mapping",
    "adjust_p_values",
]

CorrectionMethod = Literal["none", "bonferroni", "holm", "benjamini-hochberg"]
_METHODS = ("none", "bonferroni", "holm", "benjamini-hochberg")

K = TypeVar("K", bound=Hashable)


def _is_missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _adjust(p: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values of a complete family (no missing values)."""
    m = p.size
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        capped: np.ndarray = np.minimum(1.0, m * p)
        return capped
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    ranks = np.arange(1, m + 1)
    if method == "holm":
        stepped = np.maximum.accumulate(np.minimum(1.0, (m - ranks + 1) * ranked))
    else:
        stepped = np.minimum.accumulate(np.minimum(1.0, m * ranked / ranks)[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def adjust_p_values(
    p_values: Sequence[float | None], method: CorrectionMethod = "holm"
) -> list[float | None]:
    """Adjusted p-values in the input order; ``None`` and NaN stay as they are.

    The family is every present p-value in ``p_values``: pass exactly the tests that share
    one error budget.
    """
    if method not in _METHODS:
        msg = f"method must be one of {', '.join(_METHODS)}; got {method!r}"
        raise InvalidArgumentError(msg)
    if isinstance(p_values, str | bytes) or not isinstance(p_values, Iterable):
        msg = f"p_values must be a sequence of numbers or None, got {p_values!r}"
        raise InvalidArgumentError(msg)
    items = list(p_values)
    values: list[float | None] = [
        None if value is None else real_number(f"p_values[{i}]", value)
        for i, value in enumerate(items)
    ]
    present: list[int] = []
    for i, value in enumerate(values):
        if value is None or math.isnan(value):
            continue
        if not 0.0 <= value <= 1.0:
            msg = f"p-values must lie in [0, 1], got {value!r} at position {i}"
            raise InvalidArgumentError(msg)
        present.append(i)
    adjusted = _adjust(np.array([values[i] for i in present], dtype=float), method)
    result: list[float | None] = items
    for i, value in zip(present, adjusted, strict=True):
        result[i] = float(value)
    return result


def adjust_mapping(
    p_values: Mapping[K, float | None], method: CorrectionMethod = "holm"
) -> dict[K, float | None]:
    """Adjust a family keyed by, say, ``(metric, variant)``; keeps the mapping's order."""
    keys = list(p_values)
    adjusted = adjust_p_values([p_values[k] for k in keys], method)
    return dict(zip(keys, adjusted, strict=True))


@overload
def adjust_comparisons(
    comparisons: Mapping[K, Comparison], method: CorrectionMethod = ...
) -> dict[K, Comparison]: ...
@overload
def adjust_comparisons(
    comparisons: Sequence[Comparison], method: CorrectionMethod = ...
) -> list[Comparison]: ...
def adjust_comparisons(
    comparisons: Mapping[K, Comparison] | Sequence[Comparison],
    method: CorrectionMethod = "holm",
) -> dict[K, Comparison] | list[Comparison]:
    """Comparisons with adjusted ``p_value``; everything else (intervals too) unchanged.

    Bayesian results (``p_value`` None) and degenerate ones pass through untouched. The
    intervals stay at the unadjusted level; report them as such.
    """
    if isinstance(comparisons, Mapping):
        keys = list(comparisons)
        values = [comparisons[k] for k in keys]
    else:
        keys = []
        values = list(comparisons)
    adjusted = adjust_p_values([c.p_value for c in values], method)
    updated = [
        c if _is_missing(c.p_value) else dataclasses.replace(c, p_value=p)
        for c, p in zip(values, adjusted, strict=True)
    ]
    if isinstance(comparisons, Mapping):
        return dict(zip(keys, updated, strict=True))
    return updated
