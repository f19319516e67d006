"""Benchmark of the statistics engine against scipy/statsmodels on raw arrays, in one run.

    .venv/bin/python bench/stats.py [--quick]

Rows: (0) one ``compare`` call (the scalar fast path) against one scipy
``ttest_ind_from_stats`` call on the same summary, and against ``compare_many`` on one pair
(the vectorised path a single call took before), in microseconds per call; (1) 1,000 metric x variant comparisons from sufficient statistics with ``compare_many``
(and one ``compare`` call per pair) against scipy's Welch test, both from summary statistics
(``ttest_ind_from_stats``) and from the raw arrays (``ttest_ind``, 1,000 rows per arm);
(2) from 10M raw rows to a test: ``SampleStats.from_values`` + ``compare`` against
``scipy.stats.ttest_ind`` and statsmodels' ``CompareMeans``; (3) the same for CUPED
(``CupedStats`` + ``compare``) against a statsmodels OLS regression adjustment. Each time is
the best of a few repeats (the machine is shared, so minima are the least noisy); the ratio
is baseline time over abflow time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abflow.stats import CupedStats, SampleStats, compare, compare_many


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """Minimum wall time of ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def row(task: str, ours_name: str, ours: float, base_name: str, base: float) -> str:
    ratio = base / ours
    shown = f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.1f}" if ratio >= 1 else f"{ratio:.2f}"
    return f"| {task} | {ours_name} | {ours * 1e3:,.1f} ms | {base_name} | {base * 1e3:,.1f} ms | {shown}x |"


def per_call(calls: int, work: Callable[[], object]) -> float:
    """Best of five runs of ``calls`` calls, in seconds per call."""
    return best_of(5, lambda: [work() for _ in range(calls)]) / calls


def row_us(task: str, ours_name: str, ours: float, base_name: str, base: float) -> str:
    ratio = base / ours
    shown = f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.1f}" if ratio >= 1 else f"{ratio:.2f}"
    return f"| {task} | {ours_name} | {ours * 1e6:,.1f} µs | {base_name} | {base * 1e6:,.1f} µs | {shown}x |"


def single_comparison(rng: np.random.Generator, calls: int) -> list[str]:
    x_c, x_t = rng.gamma(2.0, 5.0, 1_000), rng.gamma(2.0, 5.2, 1_000)
    control, treatment = SampleStats.from_values(x_c), SampleStats.from_values(x_t)
    summary = (x_t.mean(), x_t.std(ddof=1), 1_000, x_c.mean(), x_c.std(ddof=1), 1_000)
    ours = compare(control, treatment, relative=False)
    reference = sps.ttest_ind_from_stats(*summary, equal_var=False)
    assert abs(ours.p_value / reference.pvalue - 1.0) < 1e-9
    t_fast = per_call(calls, lambda: compare(control, treatment, relative=False))
    t_fast_rel = per_call(calls, lambda: compare(control, treatment))
    t_scipy = per_call(calls, lambda: sps.ttest_ind_from_stats(*summary, equal_var=False))
    t_many = per_call(calls // 10, lambda: compare_many([control], [treatment]))
    task = "1 comparison (per call)"
    return [
        row_us(task, "`compare` (absolute)", t_fast, "scipy `ttest_ind_from_stats`", t_scipy),
        row_us(task, "`compare` (relative)", t_fast_rel, "scipy `ttest_ind_from_stats`", t_scipy),
        row_us(task, "`compare` (relative)", t_fast_rel, "`compare_many` on 1 pair", t_many),
    ]


def many_comparisons(rng: np.random.Generator, count: int, rows: int) -> list[str]:
    raw_c = rng.gamma(2.0, 5.0, (count, rows))
    raw_t = rng.gamma(2.0, 5.2, (count, rows))
    controls = [SampleStats.from_values(x) for x in raw_c]
    treatments = [SampleStats.from_values(x) for x in raw_t]
    mean_c, mean_t = raw_c.mean(axis=1), raw_t.mean(axis=1)
    sd_c, sd_t = raw_c.std(axis=1, ddof=1), raw_t.std(axis=1, ddof=1)

    # the answers agree before any timing is reported
    ours = compare_many(controls, treatments, relative=False)
    ref = sps.ttest_ind(raw_t, raw_c, axis=1, equal_var=False)
    np.testing.assert_allclose(
        np.array([r.p_value for r in ours], dtype=float), ref.pvalue, rtol=1e-6
    )

    t_many = best_of(5, lambda: compare_many(controls, treatments, relative=False))
    t_many_rel = best_of(5, lambda: compare_many(controls, treatments))
    t_loop = best_of(1, lambda: [compare(c, t) for c, t in zip(controls, treatments, strict=True)])
    t_from_stats = best_of(
        5,
        lambda: sps.ttest_ind_from_stats(mean_t, sd_t, rows, mean_c, sd_c, rows, equal_var=False),
    )
    t_raw_vec = best_of(3, lambda: sps.ttest_ind(raw_t, raw_c, axis=1, equal_var=False))
    t_raw_loop = best_of(
        1,
        lambda: [sps.ttest_ind(t, c, equal_var=False) for c, t in zip(raw_c, raw_t, strict=True)],
    )
    task = f"{count:,} comparisons"
    return [
        row(
            task,
            "`compare_many` (absolute)",
            t_many,
            "scipy `ttest_ind_from_stats` (arrays)",
            t_from_stats,
        ),
        row(
            task,
            "`compare_many` (absolute)",
            t_many,
            f"scipy `ttest_ind` raw, vectorised ({rows:,} rows/arm)",
            t_raw_vec,
        ),
        row(
            task,
            "`compare_many` (relative, delta method)",
            t_many_rel,
            f"scipy `ttest_ind` raw, loop ({rows:,} rows/arm)",
            t_raw_loop,
        ),
        row(
            task,
            "`compare` in a loop (relative)",
            t_loop,
            f"scipy `ttest_ind` raw, loop ({rows:,} rows/arm)",
            t_raw_loop,
        ),
    ]


def raw_rows(rng: np.random.Generator, rows: int, cuped_rows: int) -> list[str]:
    variant = rng.integers(0, 2, rows).astype(bool)
    pre = rng.gamma(2.0, 5.0, rows)
    value = 0.6 * pre + rng.gamma(2.0, 2.0, rows) + 0.1 * variant
    x_c, x_t = value[~variant], value[variant]

    def ours_mean() -> object:
        return compare(SampleStats.from_values(x_c), SampleStats.from_values(x_t), relative=False)

    def scipy_mean() -> object:
        return sps.ttest_ind(x_t, x_c, equal_var=False)

    def statsmodels_mean() -> object:
        return CompareMeans(DescrStatsW(x_t), DescrStatsW(x_c)).ttest_ind(usevar="unequal")

    a = ours_mean()
    assert abs(a.p_value - scipy_mean().pvalue) <= 1e-6 * max(a.p_value, 1e-300)  # type: ignore[attr-defined]

    t_ours = best_of(3, ours_mean)
    t_scipy = best_of(3, scipy_mean)
    t_sm = best_of(2, statsmodels_mean)

    v, p, y = variant[:cuped_rows], pre[:cuped_rows], value[:cuped_rows]
    y_c, p_c, y_t, p_t = y[~v], p[~v], y[v], p[v]  # split by variant outside the timing, as above

    def ours_cuped() -> object:
        return compare(
            CupedStats.from_values(y_c, p_c), CupedStats.from_values(y_t, p_t), relative=False
        )

    def ols_cuped() -> object:
        design = sm.add_constant(np.column_stack([v.astype(float), p]))
        return sm.OLS(y, design).fit()

    ols = ols_cuped()
    got = ours_cuped()
    assert abs(got.effect - ols.params[1]) < 0.1 * got.standard_error  # type: ignore[attr-defined]
    t_cuped = best_of(3, ours_cuped)
    t_ols = best_of(2, ols_cuped)
    return [
        row(
            f"{rows / 1e6:g}M raw rows -> Welch test",
            "`from_values` + `compare`",
            t_ours,
            "scipy `ttest_ind`",
            t_scipy,
        ),
        row(
            f"{rows / 1e6:g}M raw rows -> Welch test",
            "`from_values` + `compare`",
            t_ours,
            "statsmodels `CompareMeans`",
            t_sm,
        ),
        row(
            f"{cuped_rows / 1e6:g}M raw rows -> CUPED",
            "`CupedStats.from_values` + `compare`",
            t_cuped,
            "statsmodels OLS (y ~ treated + pre)",
            t_ols,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    rows, cuped_rows = (1_000_000, 200_000) if args.quick else (10_000_000, 2_000_000)
    lines = [
        "| task | abflow | time | baseline (same run) | time | ratio |",
        "|---|---|---:|---|---:|---:|",
        *single_comparison(rng, 2_000),
        *many_comparisons(rng, 1_000, 1_000),
        *raw_rows(rng, rows, cuped_rows),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
