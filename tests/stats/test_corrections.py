"""Holm and Benjamini-Hochberg adjusted p-values against statsmodels' multipletests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multitest_reference import multipletests

from abflow.errors import InvalidArgumentError
from abflow.stats.corrections import adjust_comparisons, adjust_mapping, adjust_p_values
from abflow.stats.records import Comparison

REFERENCE_NAMES = {"holm": "holm", "benjamini-hochberg": "fdr_bh", "bonferroni": "bonferroni"}


@pytest.mark.parametrize("method", ["holm", "benjamini-hochberg", "bonferroni"])
def test_matches_multipletests(method: str, rng: np.random.Generator) -> None:
    for size in (1, 2, 7, 40):
        # A mix of clear signals and noise, and a few exact ties.
        p = np.concatenate([rng.uniform(0, 0.01, size // 3), rng.uniform(0, 1, size - size // 3)])
        if size > 5:
            p[-1] = p[-2] = p[0]
        rng.shuffle(p)
        expected = multipletests(p, method=REFERENCE_NAMES[method])[1]
        got = adjust_p_values(p.tolist(), method)  # type: ignore[arg-type]
        np.testing.assert_allclose(np.array(got, dtype=float), expected, rtol=1e-12)


def test_missing_values_are_outside_the_family() -> None:
    p = [0.01, None, 0.04, math.nan, 0.03, 0.2]
    present = [0.01, 0.04, 0.03, 0.2]
    expected = multipletests(present, method="holm")[1]
    got = adjust_p_values(p, "holm")
    assert got[1] is None
    assert got[3] is not None
    assert math.isnan(got[3])
    np.testing.assert_allclose([got[0], got[2], got[4], got[5]], expected, rtol=1e-12)


def test_none_method_and_empty_family() -> None:
    assert adjust_p_values([0.2, None, 0.01], "none") == [0.2, None, 0.01]
    assert adjust_p_values([], "holm") == []
    assert adjust_p_values([None, None], "benjamini-hochberg") == [None, None]


def test_adjusted_values_never_fall_below_raw(rng: np.random.Generator) -> None:
    p = rng.uniform(0, 1, 25)
    for method in ("holm", "benjamini-hochberg", "bonferroni"):
        got = np.array(adjust_p_values(p.tolist(), method), dtype=float)  # type: ignore[arg-type]
        assert np.all(got >= p - 1e-15)
        assert np.all(got <= 1.0)
    holm = np.array(adjust_p_values(p.tolist(), "holm"), dtype=float)
    bh = np.array(adjust_p_values(p.tolist(), "benjamini-hochberg"), dtype=float)
    assert np.all(bh <= holm + 1e-15)


def test_mapping_keeps_order_and_keys() -> None:
    family = {
        ("revenue", "b"): 0.030,
        ("conversion", "b"): 0.001,
        ("latency_p95", "b"): None,
        ("conversion", "c"): 0.020,
    }
    got = adjust_mapping(family, "benjamini-hochberg")
    assert list(got) == list(family)
    expected = multipletests([0.030, 0.001, 0.020], method="fdr_bh")[1]
    assert got[("latency_p95", "b")] is None
    np.testing.assert_allclose(
        [got[("revenue", "b")], got[("conversion", "b")], got[("conversion", "c")]],
        expected,
        rtol=1e-12,
    )


def _comparison(p_value: float | None, method: str = "frequentist") -> Comparison:
    return Comparison(
        effect=0.1,
        ci_low=0.0,
        ci_high=0.2,
        p_value=p_value,
        method=method,
        relative=True,
        alpha=0.05,
        chance_to_win=None if p_value is not None else 0.97,
    )


def test_comparisons_sequence_and_mapping() -> None:
    items = [_comparison(0.04), _comparison(None, "bayesian"), _comparison(0.01)]
    adjusted = adjust_comparisons(items, "holm")
    expected = multipletests([0.04, 0.01], method="holm")[1]
    assert isinstance(adjusted, list)
    assert adjusted[1] is items[1]
    np.testing.assert_allclose([adjusted[0].p_value, adjusted[2].p_value], expected)
    assert adjusted[0].ci_low == items[0].ci_low
    assert adjusted[0].method == "frequentist"
    keyed = adjust_comparisons({"a": items[0], "b": items[1], "c": items[2]}, "holm")
    assert list(keyed) == ["a", "b", "c"]
    assert keyed["a"].p_value == adjusted[0].p_value
    assert keyed["b"].p_value is None


def test_invalid_arguments_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="method must be one of"):
        adjust_p_values([0.1], "hochberg")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"p-values must lie in \[0, 1\]"):
        adjust_p_values([0.1, 1.5], "holm")
    with pytest.raises(InvalidArgumentError, match="position 0"):
        adjust_p_values([-0.1], "holm")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
    st.sampled_from(["holm", "benjamini-hochberg", "bonferroni"]),
)
def test_adjustment_keeps_order_and_bounds(p: list[float], method: str) -> None:
    adjusted = adjust_p_values(p, method)  # type: ignore[arg-type]
    for i, (raw, adj) in enumerate(zip(p, adjusted, strict=True)):
        assert adj is not None
        assert raw - 1e-12 <= adj <= 1.0
        for j in range(len(p)):
            if raw < p[j]:
                other = adjusted[j]
                assert other is not None
                assert adj <= other + 1e-12, (i, j)
