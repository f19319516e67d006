"""The vectorised drift path against SciPy computed here, one table of measures, JS bases.

Every statistic ``detect_drift`` reports is recomputed in this file from the generated values
with SciPy (``ks_2samp``, ``wasserstein_distance``, ``jensenshannon``, ``chi2_contingency``)
and by hand (PSI), after dropping the missing values the plain way, so that the fast reading
of columns (by dtype, one type pass per list) and the sorted-sample measures cannot drift
away from the definitions.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from abflow.drift import (
    DEFAULT_THRESHOLDS,
    MEASURES,
    PSI_FLOOR,
    DriftMethod,
    compare_feature,
    detect_drift,
    jensen_shannon,
    wasserstein_normed,
)
from abflow.drift.binning import quantile_edges
from abflow.errors import InvalidArgumentError

ROWS = 3000  # > AUTO_TEST_MAX_SAMPLE: auto picks the distances; tests are forced below


def _samples(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Numbers with NaN and ties, text with None and "", as numpy arrays."""

    def one(shift: float, n: int) -> dict[str, Any]:
        normal = rng.normal(shift, 1, n)
        normal[rng.random(n) < 0.03] = np.nan
        rounded = np.round(rng.lognormal(1 + shift, 0.5, n), 1)  # ties
        names = np.array(["FR", "DE", "US", "IT", "", None], dtype=object)
        shares = [0.3, 0.25 + shift / 4, 0.2, 0.15 - shift / 4, 0.05, 0.05]
        country = names[rng.choice(6, n, p=shares)]
        return {"normal": normal, "rounded": rounded, "country": country}

    return one(0.0, ROWS), one(0.2, ROWS + 321)


def _present(values: Any) -> list[Any]:
    return [
        v
        for v in values
        if v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))
    ]


def _counts(kind: str, ref: list[Any], cur: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    if kind == "numeric":
        edges = quantile_edges(np.array(ref), 10)
        a = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1)
        b = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1)
        return a.astype(float), b.astype(float)
    names = sorted(set(ref) | set(cur))
    ref_found, cur_found = Counter(ref), Counter(cur)
    return (
        np.array([ref_found[n] for n in names], float),
        np.array([cur_found[n] for n in names], float),
    )


def _expected(method: str, kind: str, ref: list[Any], cur: list[Any]) -> tuple[float, Any]:
    """(statistic, p-value) of ``method`` from SciPy, on the present values."""
    a, b = _counts(kind, ref, cur)
    if method == "psi":
        p, q = np.maximum(a / a.sum(), PSI_FLOOR), np.maximum(b / b.sum(), PSI_FLOOR)
        return float(np.sum((q - p) * np.log(q / p))), None
    if method == "js" or (method == "wasserstein" and kind == "categorical"):
        return float(jensenshannon(a, b, base=2)), None
    if method == "chi2" or (method == "ks" and kind == "categorical"):
        table = np.array([a, b])
        result = sps.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)
        return float(result.statistic), float(result.pvalue)
    if method == "ks":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = sps.ks_2samp(ref, cur)
        return float(result.statistic), float(result.pvalue)
    return float(sps.wasserstein_distance(ref, cur) / np.std(ref)), None


@pytest.mark.parametrize("as_list", [False, True], ids=["arrays", "lists"])
def test_every_statistic_equals_scipy_on_the_present_values(
    rng: np.random.Generator, as_list: bool
) -> None:
    reference, current = _samples(rng)
    if as_list:
        reference = {k: v.tolist() for k, v in reference.items()}
        current = {k: v.tolist() for k, v in current.items()}
    for method in MEASURES:
        report = detect_drift(reference, current, method=method)
        for got in report.features:
            kind = "categorical" if got.feature == "country" else "numeric"
            ref, cur = _present(reference[got.feature]), _present(current[got.feature])
            statistic, p_value = _expected(method.value, kind, ref, cur)
            assert got.kind == kind
            assert got.statistic == pytest.approx(statistic, rel=1e-9), (method, got.feature)
            if p_value is None:
                assert got.p_value is None
                assert got.drifted == (statistic >= DEFAULT_THRESHOLDS[got.method])
            else:
                assert got.p_value == pytest.approx(p_value, rel=1e-9, abs=1e-300)
                assert got.drifted == (p_value < DEFAULT_THRESHOLDS[got.method])
            assert got.psi == pytest.approx(_expected("psi", kind, ref, cur)[0], rel=1e-9)
            assert (got.n_reference, got.n_current) == (len(ref), len(cur))
            n_ref = len(reference[got.feature])
            assert got.missing_reference == pytest.approx((n_ref - len(ref)) / n_ref)


def test_threads_lists_and_arrays_give_the_same_report(rng: np.random.Generator) -> None:
    reference, current = _samples(rng)
    one = detect_drift(reference, current)
    assert detect_drift(reference, current, workers=3) == one
    assert detect_drift(reference, current, workers=2) == one
    as_lists = detect_drift(
        {k: v.tolist() for k, v in reference.items()},
        {k: v.tolist() for k, v in current.items()},
    )
    assert as_lists == one


@given(
    st.lists(st.floats(-1e3, 1e3).map(lambda x: round(x, 1)), min_size=1, max_size=60),
    st.lists(st.floats(-1e3, 1e3).map(lambda x: round(x, 1)), min_size=1, max_size=60),
)
@settings(max_examples=100, deadline=None)
def test_wasserstein_equals_scipy_with_ties_and_unequal_sizes(
    a: list[float], b: list[float]
) -> None:
    scale = np.std(a) or np.std(a + b)
    expected = sps.wasserstein_distance(a, b) / scale if scale else 0.0
    assert wasserstein_normed(np.array(a), np.array(b)) == pytest.approx(
        expected, rel=1e-9, abs=1e-12
    )


@given(
    st.lists(st.integers(0, 1000), min_size=2, max_size=12),
    st.data(),
)
@settings(max_examples=100, deadline=None)
def test_jensen_shannon_in_natural_log_is_scipys_default(
    ref: list[int], data: st.DataObject
) -> None:
    cur = data.draw(st.lists(st.integers(0, 1000), min_size=len(ref), max_size=len(ref)))
    if sum(ref) == 0 or sum(cur) == 0:
        return
    expected = float(jensenshannon(np.array(ref, float), np.array(cur, float)))
    assert jensen_shannon(np.array(ref), np.array(cur), base="e") == pytest.approx(
        expected, abs=1e-7
    )


def test_base_two_is_1_201_times_natural_log(rng: np.random.Generator) -> None:
    ref = rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2]).tolist()
    cur = rng.choice(["a", "b", "c"], 5000, p=[0.4, 0.3, 0.3]).tolist()
    two = compare_feature("c", ref, cur, kind="categorical", method="js")
    e = compare_feature("c", ref, cur, kind="categorical", method="js", js_base="e")
    assert two.statistic / e.statistic == pytest.approx(1 / math.sqrt(math.log(2)), rel=1e-9)
    assert round(two.statistic / e.statistic, 3) == 1.201
    assert (two.js_base.value, e.js_base.value) == ("2", "e")
    assert e.as_dict()["js_base"] == "e"
    assert e.threshold == 0.1  # Evidently's default, in its base
    disjoint = jensen_shannon(np.array([1, 0]), np.array([0, 1]), base="e")
    assert disjoint == pytest.approx(math.sqrt(math.log(2)))
    with pytest.raises(InvalidArgumentError, match="js_base must be 2 or e"):
        detect_drift({"c": ref}, {"c": cur}, js_base=10)


def test_every_method_has_one_row_in_the_table() -> None:
    assert set(MEASURES) == set(DriftMethod) - {DriftMethod.auto}
    for method, measure in MEASURES.items():
        assert measure.method is method
        assert DEFAULT_THRESHOLDS[method] == measure.default_threshold
        assert "numeric" in measure.applies_to
        if "categorical" not in measure.applies_to:
            twin = measure.categorical_twin
            assert twin is not None
            assert "categorical" in MEASURES[twin].applies_to
            assert MEASURES[twin].is_test == measure.is_test  # a test stays a test
        assert measure.describe().startswith(f"{method.value}: ")


def test_the_cli_help_lists_the_table() -> None:
    from abflow.cli.drift import EXAMPLES

    for measure in MEASURES.values():
        assert measure.describe() in " ".join(EXAMPLES.split())


def test_text_numbers_and_booleans_keep_their_own_categories() -> None:
    """1, 1.0 and True are equal to Python but three categories, as their text differs."""
    ref = [1, 1.0, True, "1", None, float("nan"), ""] * 10
    got = compare_feature("c", ref, ref, kind="categorical", method="chi2")
    assert got.n_reference == 40  # 1 and "1" share the text "1": 1, 1.0, True, "1" -> 3 names
    assert got.missing_reference == pytest.approx(3 / 7)
    report = detect_drift({"c": ref}, {"c": ["1"] * 20 + ["True"] * 10 + ["1.0"] * 10})
    assert report.features[0].statistic == pytest.approx(0.0, abs=1e-12)


def test_column_reading_edge_cases() -> None:
    # numbers with empty strings: numeric, the empty strings missing
    got = compare_feature("x", [1.0, "", 2.0, 3.0], [1.0, 2.0], method="ks")
    assert (got.kind, got.n_reference, got.missing_reference) == ("numeric", 3, 0.25)
    # numpy text arrays are categorical, numpy booleans numbers (as Python reads them)
    report = detect_drift(
        {"s": np.array(["a", "b"] * 5), "b": np.array([True, False] * 5)},
        {"s": np.array(["a", ""] * 5), "b": np.array([True, True] * 5)},
    )
    kinds = {f.feature: (f.kind, f.n_current) for f in report.features}
    assert kinds == {"s": ("categorical", 5), "b": ("numeric", 10)}
    # dates are read as numpy reads them (days since 1970), as a list of their values would be
    days = np.array(["2024-01-01", "2024-01-03"], dtype="datetime64[D]")
    as_array = compare_feature("d", days, days + 1, method="wasserstein")
    assert as_array == compare_feature("d", list(days), list(days + 1), method="wasserstein")
    assert as_array.statistic == pytest.approx(sps.wasserstein_distance([0, 2], [1, 3]) / 1.0)
    # Python booleans are categorical
    assert detect_drift({"b": [True, False]}, {"b": [True, None]}).features[0].kind == (
        "categorical"
    )


def test_the_callers_arrays_are_not_reordered(rng: np.random.Generator) -> None:
    ref, cur = rng.normal(size=2000), rng.normal(size=1500)
    ref_copy, cur_copy = ref.copy(), cur.copy()
    compare_feature("x", ref, cur, method="wasserstein")
    assert np.array_equal(ref, ref_copy)
    assert np.array_equal(cur, cur_copy)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_bad_workers_are_refused(workers: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="workers must be"):
        detect_drift({"x": [1.0]}, {"x": [1.0]}, workers=workers)


def test_pandas_columns_are_read_as_arrays(rng: np.random.Generator) -> None:
    pd = pytest.importorskip("pandas")
    reference, current = _samples(rng)
    frames = pd.DataFrame(reference), pd.DataFrame(current)
    got = detect_drift({k: frames[0][k] for k in reference}, {k: frames[1][k] for k in current})
    assert got == detect_drift(reference, current)
