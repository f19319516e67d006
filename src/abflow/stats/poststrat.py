"""Post-stratification: compare two arms within pre-declared cells, then weight the cells.

When a dimension known before the experiment (country, platform, a pre-period segment)
explains part of a metric, comparing arms within each cell and weighting each cell by its
share of all units removes that part of the variance (Miratrix, Sekhon and Yu, 2013). The
estimate is the regression adjustment with one indicator per cell and its interaction with
the arm (Lin, 2013), which GrowthBook uses for post-stratification:

    absolute  D = sum_k w_k (mean_t,k - mean_c,k),  w_k = n_k / n (both arms)
    Var(D)      = sum_k w_k^2 (v_t,k / n_t,k + v_c,k / n_c,k)
    relative  R = (M_t - M_c) / |M_c|,  M_a = sum_k w_k mean_a,k  (delta method)

Means, proportions (``SampleStats``) and ratios (``RatioStats``, each cell's ratio by the
delta method) are supported; the interval is normal. With a single cell, or a cell where an
arm has fewer than two units, the cells carry no usable information and the comparison falls
back to the plain one on the pooled statistics (``Comparison.method`` then says so).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import reduce
from operator import add

import numpy as np
from scipy import special

from abflow.errors import InvalidArgumentError
from abflow.stats.compare import ERROR_MESSAGES, compare
from abflow.stats.moments import summarize
from abflow.stats.records import Comparison, SampleStats
from abflow.stats.sufficient import RatioStats
from abflow.stats.validation import real_number

__all__ = ["POST_STRATIFIED", "compare_post_stratified"]

POST_STRATIFIED = "post-stratified"
CellStats = SampleStats | RatioStats


def _check(controls: Sequence[CellStats], treatments: Sequence[CellStats], alpha: float) -> None:
    if not (0.0 < real_number("alpha", alpha) < 1.0):
        msg = f"alpha must be strictly between 0 and 1, got {alpha!r}"
        raise InvalidArgumentError(msg)
    if len(controls) != len(treatments) or not controls:
        msg = (
            f"need one control and one treatment statistic per cell, got {len(controls)} "
            f"and {len(treatments)}"
        )
        raise InvalidArgumentError(msg)
    kind = type(controls[0])
    if kind not in (SampleStats, RatioStats):
        msg = f"post-stratification takes SampleStats or RatioStats, got {kind.__name__}"
        raise InvalidArgumentError(msg)


def compare_post_stratified(
    controls: Sequence[CellStats],
    treatments: Sequence[CellStats],
    *,
    relative: bool = True,
    alpha: float = 0.05,
) -> Comparison:
    """Two-sided comparison of treatment with control, post-stratified on cells.

    ``controls[k]`` and ``treatments[k]`` are the two arms' statistics in cell ``k``.
    """
    _check(controls, treatments, alpha)
    usable = len(controls) > 1 and all(
        c.n >= 2 and t.n >= 2 for c, t in zip(controls, treatments, strict=True)
    )
    if not usable:
        pooled = compare(
            reduce(add, controls), reduce(add, treatments), relative=relative, alpha=alpha
        )
        return _renamed(pooled, "frequentist (single-cell fallback)")
    control, treatment, _ = summarize(controls, treatments)
    n = control.n + treatment.n
    weights = n / n.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c = float(np.dot(weights, control.mean))
        mean_t = float(np.dot(weights, treatment.mean))
        var_c = float(np.dot(weights**2, control.variance / control.n))
        var_t = float(np.dot(weights**2, treatment.variance / treatment.n))
    code = None
    if not (math.isfinite(mean_c) and math.isfinite(mean_t)):
        code = "zero_denominator"
    elif relative and mean_c == 0.0:
        code = "zero_control_mean"
    if code is None:
        if relative:
            effect = (mean_t - mean_c) / abs(mean_c)
            variance = var_t / mean_c**2 + mean_t**2 * var_c / mean_c**4
        else:
            effect, variance = mean_t - mean_c, var_t + var_c
        if not (variance > 0.0 and math.isfinite(variance)):
            code = "zero_variance"
    if code is not None:
        nan = math.nan
        return Comparison(
            nan, nan, nan, nan, POST_STRATIFIED, relative, alpha,
            control_mean=mean_c, treatment_mean=mean_t,
            error_code=code, error_message=ERROR_MESSAGES[code],
        )  # fmt: skip
    se = math.sqrt(variance)
    z = -float(special.ndtri(alpha / 2.0))
    return Comparison(
        effect=effect,
        ci_low=effect - z * se,
        ci_high=effect + z * se,
        p_value=float(2.0 * special.ndtr(-abs(effect) / se)),
        method=POST_STRATIFIED,
        relative=relative,
        alpha=alpha,
        control_mean=mean_c,
        treatment_mean=mean_t,
        standard_error=se,
    )


def _renamed(result: Comparison, method: str) -> Comparison:
    return dataclasses.replace(result, method=method)
