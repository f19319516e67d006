"""Property tests: any valid statistics give a sane record, and statistics merge exactly."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from abflow.stats import SampleStats, compare, compare_many
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
