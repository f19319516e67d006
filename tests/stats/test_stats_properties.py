"""Property tests: any valid statistics give a sane record, and statistics merge exactly."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from abflow.stats import (
    CupedStats,
    RatioCupedStats,
    RatioStats,
    SampleStats,
    compare,
    compare_many,
)
from abflow.stats.compare import ERROR_MESSAGES


@st.composite
def sample_stats(draw: st.DrawFn) -> SampleStats:
    n = draw(st.integers(0, 10**6))
    if draw(st.booleans()):
        return SampleStats.proportion(n, draw(st.integers(0, n)))
    mean = draw(st.floats(-1e3, 1e3))
    variance = draw(st.floats(0.0, 1e4))
    total = n * mean
    squares = max(n - 1, 0) * variance + (total * total / n if n else 0.0)
    return SampleStats(n, total, squares)


METHODS = st.sampled_from(["frequentist", "sequential", "bayesian"])
ALTERNATIVES = st.sampled_from(["two-sided", "greater", "less"])


@settings(max_examples=300, deadline=None)
@given(sample_stats(), sample_stats(), METHODS, ALTERNATIVES, st.booleans())
def test_any_valid_input_gives_a_sane_record(
    control: SampleStats, treatment: SampleStats, method: str, alternative: str, relative: bool
) -> None:
    result = compare(
        control,
        treatment,
        method=method,  # type: ignore[arg-type]
        alternative=alternative,  # type: ignore[arg-type]
        relative=relative,
    )
    if result.error_code is not None:
        assert result.error_message == ERROR_MESSAGES[result.error_code]
        assert math.isnan(result.effect)
        return
    assert math.isfinite(result.effect)
    assert math.isfinite(result.standard_error)
    assert result.standard_error > 0
    assert result.ci_low <= result.effect <= result.ci_high
    if method == "bayesian":
        assert result.p_value is None
        assert result.chance_to_win is not None
        assert 0.0 <= result.chance_to_win <= 1.0
        assert result.expected_loss is not None
        assert result.expected_loss >= 0.0
    else:
        assert result.p_value is not None
        assert 0.0 <= result.p_value <= 1.0


@given(st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=50), st.integers(0, 50))
def test_merging_equals_the_union(values: list[float], cut: int) -> None:
    cut = min(cut, len(values))
    merged = SampleStats.from_values(values[:cut]) + SampleStats.from_values(values[cut:])
    whole = SampleStats.from_values(values)
    assert merged.n == whole.n
    assert math.isclose(merged.sum, whole.sum, rel_tol=1e-9, abs_tol=1e-3)
    assert math.isclose(merged.sum_squares, whole.sum_squares, rel_tol=1e-9, abs_tol=1e-3)


def test_empty_batch() -> None:
    assert compare_many([], []) == []


@st.composite
def raw_pair(draw: st.DrawFn, width: int) -> tuple[list[list[float]], list[list[float]]]:
    """Two arms of raw per-unit values with ``width`` columns (small, with ties and zeros)."""
    arms = []
    for _ in range(2):
        n = draw(st.integers(0, 12))
        columns = [
            draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.5, 10.0]), min_size=n, max_size=n))
            for _ in range(width)
        ]
        arms.append(columns)
    return arms[0], arms[1]


@settings(max_examples=200, deadline=None)
@given(raw_pair(4), METHODS, st.booleans())
def test_ratio_and_cuped_never_raise_on_data(
    arms: tuple[list[list[float]], list[list[float]]], method: str, relative: bool
) -> None:
    control, treatment = arms
    pairs = [
        (RatioStats.from_values(*control[:2]), RatioStats.from_values(*treatment[:2])),
        (CupedStats.from_values(*control[:2]), CupedStats.from_values(*treatment[:2])),
        (RatioCupedStats.from_values(*control), RatioCupedStats.from_values(*treatment)),
    ]
    for c, t in pairs:
        result = compare(c, t, method=method, relative=relative)  # type: ignore[arg-type]
        if result.error_code is None:
            assert math.isfinite(result.effect)
            assert result.ci_low <= result.effect <= result.ci_high
        else:
            assert math.isnan(result.effect)
