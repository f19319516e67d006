"""A variance that rounding wrote is refused, not reported (docs/statistics.md, Precision).

``SampleStats`` keeps ``sum`` and ``sum_squares``; when the values' mean dwarfs their
spread, ``sum_squares - sum**2 / n`` keeps only rounding. Against scipy on the centred values
(which lose nothing), every comparison is either within 0.5 % of scipy's standard error or
carries ``imprecise_variance`` (or ``zero_variance``, when rounding cancels the sums
exactly); ordinary data is never refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from abflow.stats import RatioStats, SampleStats, compare, compare_many


@pytest.mark.parametrize("mean", [0.0, 1e3, 1e5, 1e6, 3e6, 1e7, 3e7, 1e8, 1e10, 1e12])
@pytest.mark.parametrize("relative", [False, True])
def test_a_number_is_right_or_refused(mean: float, relative: bool) -> None:
    rng = np.random.default_rng(int(mean) % 1000 + relative)
    refused = 0
    for _ in range(40):
        n_c, n_t = rng.integers(2, 2000, size=2)
        spread = 10 ** rng.uniform(-1, 1)
        a = mean + spread * rng.normal(size=n_c)
        b = mean + spread * (0.1 + rng.normal(size=n_t))
        result = compare(SampleStats.from_values(a), SampleStats.from_values(b), relative=relative)
        many = compare_many(
            [SampleStats.from_values(a)], [SampleStats.from_values(b)], relative=relative
        )[0]
        assert many.error_code == result.error_code  # the scalar and vectorised ways agree
        if result.error_code is not None:
            # Rounding may also cancel the sums exactly, as values that do not vary would.
            assert result.error_code in ("imprecise_variance", "zero_variance")
            assert np.isnan(result.p_value)
            refused += 1
            continue
        se = np.sqrt(np.var(a - mean, ddof=1) / n_c + np.var(b - mean, ddof=1) / n_t)
        if relative:
            continue  # the delta method's scale differs; the absolute check covers the variance
        assert result.standard_error == pytest.approx(se, rel=5e-3)
        reference = stats.ttest_ind(b - mean, a - mean, equal_var=False)
        assert result.p_value == pytest.approx(reference.pvalue, rel=2e-2, abs=1e-12)
    if mean <= 1e5:
        assert refused == 0  # ordinary scales are never refused
    if mean >= 1e8:
        assert refused == 40  # the spread is gone: nothing is reported


def test_the_probe_case_is_refused_with_its_sentence() -> None:
    values = 1e12 + np.arange(100.0)
    control, treatment = SampleStats.from_values(values), SampleStats.from_values(values + 5)
    result = compare(control, treatment, relative=False)
    assert result.error_code == "imprecise_variance"
    assert "minus a constant near its mean" in (result.error_message or "")
    shifted = compare(
        SampleStats.from_values(values - 1e12),
        SampleStats.from_values(values + 5 - 1e12),
        relative=False,
    )
    reference = stats.ttest_ind(values + 5, values, equal_var=False)
    assert shifted.p_value == pytest.approx(reference.pvalue, rel=1e-9)


def test_proportions_and_constants_keep_their_answers() -> None:
    big = SampleStats.proportion(1e12, 1e12 - 1.0)  # a Bernoulli variance needs no sums
    assert compare(big, SampleStats.proportion(1e12, 1e12 - 3.0)).error_code is None
    constant = SampleStats.from_values([2.0] * 10)
    assert compare(constant, constant).error_code == "zero_variance"


def test_a_ratio_with_a_constant_denominator_is_not_refused() -> None:
    """0.1 h per unit sums to a variance that rounding leaves a hair off zero; harmless."""
    rng = np.random.default_rng(5)
    hours = np.full(500, 0.1)
    control = RatioStats.from_values(rng.poisson(3.0, 500).astype(float), hours)
    treatment = RatioStats.from_values(rng.poisson(3.3, 500).astype(float), hours)
    assert compare(control, treatment).error_code is None
