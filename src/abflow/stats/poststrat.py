"""Post-stratification: compare two arms within pre-declared cells, then weight the cells.

When a dimension known before the experiment (country, platform, a pre-period segment)
explains part of a metric, comparing arms within each cell and weighting each cell by its
share of all units removes that part of the variance (Miratrix, Sekhon and Yu, 2013), as
GrowthBook's engine does (gbstats' ``EffectMomentsPostStratification``, whose test numbers
abflow reproduces). Each arm's cell means are weighted by the cells' shares of all units:

    M_a = sum_k w_k mean_a,k,   w_k = n_k / n (both arms)

For a ratio, numerator and denominator means are weighted separately and the arm's value is
their ratio. The covariance of the weighted means has two parts: the cells' sampling
variance, ``sum_k w_k^2 Cov_a,k / n_a,k`` per arm, and the variance of the estimated shares
(multinomial, ``(diag(w) - w w') / n``) carried through the cell means. The effect is
``M_t - M_c`` (absolute) or ``(M_t - M_c) / |M_c|`` (relative), its variance from the delta
method; the interval is normal.

Means, proportions (``SampleStats``) and ratios (``RatioStats``) are supported. With a single
cell, or a cell where an arm has fewer than two units, the cells carry no usable information
and the comparison falls back to the plain one on the pooled statistics (``Comparison.method``
then says so).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import reduce
from operator import add

import numpy as np
import numpy.typing as npt
from scipy import special

from abflow.errors import InvalidArgumentError
from abflow.stats.compare import ERROR_MESSAGES, compare
from abflow.stats.records import Comparison, SampleStats
from abflow.stats.sufficient import RatioStats
from abflow.stats.validation import real_number

__all__ = ["POST_STRATIFIED", "compare_post_stratified"]

POST_STRATIFIED = "post-stratified"
CellStats = SampleStats | RatioStats
Array = npt.NDArray[np.float64]


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
    mixed = {type(s).__name__ for s in (*controls, *treatments)} - {kind.__name__}
    if mixed:
        msg = f"every cell must hold {kind.__name__}, got {sorted(mixed)} too"
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
    mean_c, mean_t, gradient, covariance = _weighted(controls, treatments)
    code = None
    if not (math.isfinite(mean_c) and math.isfinite(mean_t)):
        code = "zero_denominator"
    elif relative and mean_c == 0.0:
        code = "zero_control_mean"
    if code is None:
        # d effect / d (M_c, M_t), then through each arm's value to the weighted means
        if relative:
            effect = (mean_t - mean_c) / abs(mean_c)
            outer = (-mean_t * math.copysign(1.0, mean_c) / mean_c**2, 1.0 / abs(mean_c))
        else:
            effect, outer = mean_t - mean_c, (-1.0, 1.0)
        half = len(gradient) // 2
        g = np.concatenate([outer[0] * gradient[:half], outer[1] * gradient[half:]])
        variance = float(g @ covariance @ g)
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


def _cell_moments(stats: CellStats) -> tuple[list[float], list[list[float]]]:
    """A cell's mean vector and the covariance of one unit's values (``n - 1``)."""
    if isinstance(stats, SampleStats):
        return [stats.mean], [[stats.variance]]
    n = stats.n
    m, d = stats.numerator, stats.denominator
    cov = (stats.sum_products - stats.numerator_sum * stats.denominator_sum / n) / (n - 1)
    # Not ``variance``: a part whose values are all 0 or 1 would get p(1 - p), over n
    return [m.mean, d.mean], [[m.sample_variance, cov], [cov, d.sample_variance]]


def _weighted(
    controls: Sequence[CellStats], treatments: Sequence[CellStats]
) -> tuple[float, float, Array, Array]:
    """Each arm's post-stratified value, the gradient of those values with respect to the
    weighted means (control's, then treatment's), and the means' covariance."""
    cells = [
        (_cell_moments(c), _cell_moments(t), c.n, t.n)
        for c, t in zip(controls, treatments, strict=True)
    ]
    n = np.array([n_c + n_t for _, _, n_c, n_t in cells])
    weights = n / n.sum()
    # rows: the control's mean variables, then the treatment's; one column per cell
    means = np.array([[*c[0], *t[0]] for c, t, _, _ in cells]).T
    dim = means.shape[0] // 2
    covariance = np.zeros((2 * dim, 2 * dim))
    for k, (c, t, n_c, n_t) in enumerate(cells):
        covariance[:dim, :dim] += weights[k] ** 2 * np.array(c[1]) / n_c
        covariance[dim:, dim:] += weights[k] ** 2 * np.array(t[1]) / n_t
    shares = (np.diag(weights) - np.outer(weights, weights)) / n.sum()
    covariance += means @ shares @ means.T
    mu = means @ weights
    with np.errstate(divide="ignore", invalid="ignore"):
        if dim == 1:
            return float(mu[0]), float(mu[1]), np.ones(2), covariance
        mean_c, mean_t = mu[0] / mu[1], mu[2] / mu[3]
        gradient = np.array([1 / mu[1], -mu[0] / mu[1] ** 2, 1 / mu[3], -mu[2] / mu[3] ** 2])
    return float(mean_c), float(mean_t), gradient, covariance


def _renamed(result: Comparison, method: str) -> Comparison:
    return dataclasses.replace(result, method=method)
