"""Per-feature verdicts: method choice, missing values, categorical detection, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from abflow.drift import (
    AUTO_TEST_MAX_SAMPLE,
    DriftMethod,
    compare_feature,
    detect_drift,
    population_stability_index,
)
from abflow.drift.binning import bin_counts, quantile_edges
from abflow.errors import InvalidArgumentError

RNG = np.random.default_rng(2024)


def test_auto_uses_tests_on_small_samples_and_distances_on_large() -> None:
    small = RNG.normal(size=AUTO_TEST_MAX_SAMPLE).tolist()
    large = RNG.normal(size=AUTO_TEST_MAX_SAMPLE + 1).tolist()
    assert compare_feature("x", small, large).method is DriftMethod.ks
    assert compare_feature("x", large, large).method is DriftMethod.wasserstein
    assert (
        compare_feature("c", ["a"] * 10, ["b"] * 10, kind="categorical").method is DriftMethod.chi2
    )
    many = ["a", "b"] * 600
    assert compare_feature("c", many, many, kind="categorical").method is DriftMethod.js


def test_a_shift_drifts_and_the_same_distribution_does_not() -> None:
    ref = RNG.normal(size=20_000)
    same = RNG.normal(size=20_000)
    shifted = RNG.normal(0.5, 1, size=20_000)
    for method in DriftMethod:
        assert not compare_feature("x", ref, same, method=method).drifted, method
        assert compare_feature("x", ref, shifted, method=method).drifted, method


def test_psi_is_computed_on_reference_quantile_bins() -> None:
    ref = RNG.exponential(size=5_000)
    cur = RNG.exponential(1.3, size=4_000)
    got = compare_feature("x", ref, cur, method="psi", bins=8)
    edges = quantile_edges(ref, 8)
    expected = population_stability_index(bin_counts(ref, edges), bin_counts(cur, edges))
    assert got.statistic == pytest.approx(expected)
    assert got.psi == got.statistic
    assert got.threshold == 0.2
    assert got.p_value is None


def test_threshold_and_p_value_decide() -> None:
    ref, cur = RNG.normal(size=500), RNG.normal(0.15, 1, size=500)
    got = compare_feature("x", ref, cur, method="ks")
    assert got.p_value is not None
    assert got.drifted == (got.p_value < 0.05)
    strict = compare_feature("x", ref, cur, method="ks", threshold=got.p_value / 2)
    assert not strict.drifted
    loose = compare_feature("x", ref, cur, method="psi", threshold=0.0)
    assert loose.drifted  # a distance at or above 0 always drifts


def test_missing_values_are_left_out_and_reported() -> None:
    ref = [1.0, 2.0, None, float("nan"), 3.0, ""]
    cur = [1.0, 2.0, 3.0, 4.0]
    got = compare_feature("x", ref, cur, method="ks")
    assert (got.n_reference, got.n_current) == (3, 4)
    assert got.missing_reference == pytest.approx(0.5)
    assert got.missing_current == 0.0


def test_text_columns_are_categorical_and_numeric_methods_give_way() -> None:
    ref = {"country": ["FR", "DE"] * 50, "amount": list(range(100))}
    cur = {"country": ["FR"] * 60 + ["US"] * 40, "amount": list(range(100))}
    report = detect_drift(ref, cur, method="ks")
    by_name = {f.feature: f for f in report.features}
    assert by_name["country"].kind == "categorical"
    assert by_name["country"].method is DriftMethod.chi2
    assert by_name["amount"].method is DriftMethod.ks
    assert report.drifted == ("country",)
    assert report.share_drifted == 0.5
    wide = detect_drift(ref, cur, method="wasserstein")
    assert {f.feature: f.method for f in wide.features}["country"] is DriftMethod.js


def test_report_as_dict_is_stable() -> None:
    report = detect_drift({"x": [1.0, 2.0, 3.0]}, {"x": [1.0, 2.0, 3.0]}, method="psi")
    payload = report.as_dict()
    assert payload["drifted"] == []
    assert list(payload["features"][0]) == [
        "feature",
        "kind",
        "method",
        "statistic",
        "p_value",
        "threshold",
        "drifted",
        "psi",
        "n_reference",
        "n_current",
        "missing_reference",
        "missing_current",
        "js_base",
    ]


@pytest.mark.parametrize(
    ("ref", "cur", "kwargs", "message"),
    [
        ({"x": [1.0]}, {"y": [1.0]}, {}, "share no feature"),
        ({"x": [1.0]}, {"x": [1.0]}, {"features": ["z"]}, "'z' is not in the reference"),
        ({"x": [None]}, {"x": [1.0]}, {}, "no values in the reference"),
        ({"x": [1.0]}, {"x": [1.0]}, {"method": "magic"}, "unknown drift method"),
        ({"x": [1.0]}, {"x": [1.0]}, {"threshold": -1.0}, "threshold must be"),
        ({"x": [1.0]}, {"x": [1.0]}, {"categorical": ["q"]}, "'q' is not among"),
        ({"x": [1.0, float("inf")]}, {"x": [1.0]}, {}, "infinite"),
        ({"x": [[1, 2], [3, 4]]}, {"x": [[1, 2]]}, {}, "not numbers"),
        ({"x": [1.0]}, {"x": [1.0]}, {"method": "ks", "threshold": 5.0}, "between 0 and 1"),
        ({"x": [1.0]}, {"x": [1.0]}, {"method": "auto", "threshold": 0.0}, "between 0 and 1"),
    ],
)
def test_bad_input_names_the_problem(
    ref: dict[str, list[object]],
    cur: dict[str, list[object]],
    kwargs: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        detect_drift(ref, cur, **kwargs)  # type: ignore[arg-type]


def test_numbers_in_one_sample_and_text_in_the_other_is_refused() -> None:
    """One stray text cell made the current sample categorical: a shift of five standard
    deviations then showed no drift. Declared categorical, both are compared as text."""
    rng = np.random.default_rng(2)
    reference = rng.normal(0, 1, 500)
    current = [str(v) for v in rng.normal(5, 1, 499)] + ["oops"]
    with pytest.raises(
        InvalidArgumentError, match=r"numbers in the reference .* 'oops' in the current"
    ):
        detect_drift({"x": reference}, {"x": current})
    with pytest.raises(
        InvalidArgumentError, match=r"numbers in the current .* 'oops' in the reference"
    ):
        detect_drift({"x": current}, {"x": list(reference)})
    declared = detect_drift({"x": reference}, {"x": current}, categorical=["x"])
    assert declared.features[0].kind == "categorical"
    only_missing = detect_drift({"x": [None, None, "a"]}, {"x": ["a", "b", ""]})
    assert only_missing.features[0].kind == "categorical"


def test_numbers_and_objects_mixed_need_categorical() -> None:
    with pytest.raises(InvalidArgumentError, match="not numbers"):
        compare_feature("x", [1.0, object()], [1.0])


def test_numpy_nan_of_any_width_is_missing() -> None:
    got = compare_feature("x", [np.float32("nan"), 1.0, 2.0], [1.0, 2.0], method="ks")
    assert (got.n_reference, got.missing_reference) == (2, pytest.approx(1 / 3))


def test_auto_does_not_flag_a_many_category_feature_drawn_from_one_distribution() -> None:
    """A/A on 200 Zipf categories, 2,000 values a side: the JS distance of two samples of
    the same distribution is ~0.2 here (its noise grows with categories per value), so a
    distance at 0.1 flagged every pair. auto must stay near its 5 % false-alarm rate."""
    rng = np.random.default_rng(31)
    shares = 1 / np.arange(1, 201)
    shares /= shares.sum()
    names = [f"c{i}" for i in range(200)]
    hits = 0
    for _ in range(100):
        ref = rng.choice(names, 2000, p=shares).tolist()
        cur = rng.choice(names, 2000, p=shares).tolist()
        hits += compare_feature("city", ref, cur, kind="categorical").drifted
    assert hits <= 12  # Binomial(100, 0.05): P(X > 12) < 0.002; the chi-square is conservative


def test_auto_keeps_the_distance_with_enough_values_per_category() -> None:
    ten = [f"c{i}" for i in range(10)] * 150  # 1,500 values, 150 per category
    assert compare_feature("c", ten, ten, kind="categorical").method is DriftMethod.js
    many = [f"c{i}" for i in range(100)] * 15  # 1,500 values, 15 per category
    assert compare_feature("c", many, many, kind="categorical").method is DriftMethod.chi2
