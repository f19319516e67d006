"""Benchmark of drift detection on 25 columns x 1M rows, against SciPy and Evidently, in one run.

    .venv/bin/python bench/drift.py [--rows 1000000] [--repeats 2] [--quick] [--evidently]

The inputs are generated (seeded): a reference and a current sample of ``--rows`` rows each,
15 numeric columns (normal, log-normal, exponential, uniform and rounded integers, 1-5 %
missing as NaN, five of them shifted in the current sample) and 10 categorical columns of
text (2 to 100 categories with Zipf-like shares, 1 % missing as None, three of them
reweighted). Rows:

- ``detect_drift`` (method ``auto``: normalised Wasserstein on numbers, Jensen-Shannon on
  categories, PSI beside every one) on numpy columns, as a DataFrame holds them, on one
  thread and with ``workers`` = one thread per CPU, and on Python lists, as ``abflow
  drift`` reads CSV, JSON Lines and Parquet files;
- the baseline, measured in the same run: the same statistics computed column by column the
  plain way with SciPy (``scipy.stats.wasserstein_distance``, ``np.quantile`` bins for PSI,
  ``np.unique`` counts and ``scipy.spatial.distance.jensenshannon``). abflow's statistics are
  first checked against it (relative difference below 1e-9) and the verdicts must agree;
- Evidently 0.7's ``DataDriftPreset`` on the same data as pandas DataFrames, in an
  environment of its own (it needs pandas < 3, which abflow's does not hold):
  ``--evidently`` builds it once under ``~/.cache/abflow-bench`` (``$ABFLOW_BENCH_ENVS``)
  and later runs reuse it, with or without the flag (``--quick`` only with it). The samples
  go to it as Parquet files; its time to import pandas and Evidently and to read them is
  printed apart. Its verdicts are compared with abflow's run with ``js_base="e"``
  (Evidently's Jensen-Shannon base): how many agree, which differ, and how far apart the
  scores of the same measure are.

Times are the best of ``--repeats`` runs (the machine is shared: minima are the least
noisy), in wall time and in process CPU time, which other processes disturb much less; the
ratio is baseline (SciPy or Evidently) time over abflow time.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from abflow.drift import PSI_FLOOR, DriftReport, detect_drift
from abflow.drift.binning import quantile_edges
from common import load_average
from evidently_env import (
    EvidentlyRun,
    EvidentlyUnavailableError,
    cached_env,
    ensure_env,
    envs_root,
    run_preset,
)

TARGET_SECONDS = 3.0  # 25 columns x 1M rows (issue #13)
NUMERIC, CATEGORICAL = 15, 10
Columns = dict[str, Any]
Times = tuple[float, float]  # wall, process CPU (seconds)


def make_samples(rows: int, seed: int) -> tuple[Columns, Columns]:
    """Reference and current columns (numpy arrays: float64 with NaN, object with None)."""
    rng = np.random.default_rng(seed)
    reference: Columns = {}
    current: Columns = {}
    for i in range(NUMERIC):
        shift = 0.15 if i % 3 == 0 else 0.0  # columns 0, 3, 6, 9, 12 move

        def draw(moved: float, family: int = i % 5) -> np.ndarray:
            if family == 0:
                return rng.normal(moved, 1.0, rows)
            if family == 1:
                return rng.lognormal(3.0 + moved, 1.0, rows)
            if family == 2:
                return rng.exponential(2.0 * (1 + moved), rows)
            if family == 3:
                return rng.uniform(moved, 1.0 + moved, rows)
            return np.round(rng.normal(50 + 10 * moved, 10, rows))  # many ties

        for sample, moved in ((reference, 0.0), (current, shift)):
            values = draw(moved)
            values[rng.random(rows) < (0.05 if i % 4 == 1 else 0.01)] = np.nan
            sample[f"num_{i:02d}"] = values
    cardinalities = [2, 3, 5, 8, 12, 20, 30, 50, 100, 7]
    for j, k in enumerate(cardinalities):
        names = np.array([f"c{j}_{c}" for c in range(k)], dtype=object)
        shares = 1.0 / np.arange(1, k + 1)
        for sample, moved in ((reference, False), (current, j % 4 == 0)):
            weights = shares[::-1] if moved else shares  # reweighted: categories swap ranks
            values = names[rng.choice(k, rows, p=weights / weights.sum())]
            values[rng.random(rows) < 0.01] = None
            sample[f"cat_{j:02d}"] = values
    return reference, current


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    ref = np.maximum(ref_counts / ref_counts.sum(), PSI_FLOOR)
    cur = np.maximum(cur_counts / cur_counts.sum(), PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def scipy_baseline(reference: Columns, current: Columns) -> dict[str, tuple[float, float]]:
    """(statistic, PSI) per column, computed column by column the plain way with SciPy."""
    results = {}
    for name, ref_values in reference.items():
        cur_values = current[name]
        ref_counts: np.ndarray  # integer bins for numbers, float counts for categories
        cur_counts: np.ndarray
        if ref_values.dtype.kind == "f":
            ref = ref_values[~np.isnan(ref_values)]
            cur = cur_values[~np.isnan(cur_values)]
            statistic = sps.wasserstein_distance(ref, cur) / np.std(ref)
            edges = quantile_edges(ref, 10)
            ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=11)
            cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=11)
        else:
            ref_names, ref_found = np.unique(ref_values[ref_values != None], return_counts=True)  # noqa: E711
            cur_names, cur_found = np.unique(cur_values[cur_values != None], return_counts=True)  # noqa: E711
            categories = np.union1d(ref_names, cur_names)
            ref_counts = np.zeros(categories.size)
            cur_counts = np.zeros(categories.size)
            ref_counts[np.searchsorted(categories, ref_names)] = ref_found
            cur_counts[np.searchsorted(categories, cur_names)] = cur_found
            statistic = float(jensenshannon(ref_counts, cur_counts, base=2))
        results[name] = (float(statistic), _psi(ref_counts, cur_counts))
    return results


def check_agreement(report: DriftReport, baseline: dict[str, tuple[float, float]]) -> None:
    for feature in report.features:
        statistic, psi = baseline[feature.feature]
        assert feature.method.value in {"wasserstein", "js"}, feature
        np.testing.assert_allclose(feature.statistic, statistic, rtol=1e-9, err_msg=feature.feature)
        np.testing.assert_allclose(feature.psi, psi, rtol=1e-9, err_msg=feature.feature)
        assert feature.drifted == (statistic >= feature.threshold), feature.feature


def best(repeats: int, work: Callable[[], object]) -> Times:
    """Minimum wall time and minimum process CPU time of ``repeats`` runs, in seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def time_lists(reference: Columns, current: Columns, report: DriftReport, repeats: int) -> Times:
    """Best times of ``detect_drift`` on the columns as Python lists, after checking its report.

    The lists live only here: the Evidently run after it needs the memory more.
    """
    ref_lists = {name: values.tolist() for name, values in reference.items()}
    cur_lists = {name: values.tolist() for name, values in current.items()}
    assert detect_drift(ref_lists, cur_lists) == report, "lists and arrays disagree"
    return best(repeats, lambda: detect_drift(ref_lists, cur_lists))


def measure_evidently(
    reference: Columns, current: Columns, repeats: int, *, build: bool
) -> EvidentlyRun | str:
    """Evidently's DataDriftPreset in its own environment, or why it was not measured.

    ``build`` builds the environment when it is missing; without it a cached one is used.
    """
    python = cached_env()
    if python is None and build:
        print(f"building Evidently's environment once, under {envs_root()}...")
        try:
            python = ensure_env()
        except EvidentlyUnavailableError as exc:
            return f"could not build its environment: {exc}"
    if python is None:
        return "not measured (--evidently builds its environment, once)"
    print(
        f"timing Evidently's DataDriftPreset ({python.parent.parent.name}); "
        f"load average {load_average()}..."
    )
    try:
        return run_preset(python, reference, current, repeats)
    except EvidentlyUnavailableError as exc:
        return f"failed: {exc}"


SAME_MEASURE = {"wasserstein": "Wasserstein distance (normed)", "js": "Jensen-Shannon distance"}


def compare_verdicts(ours: DriftReport, theirs: EvidentlyRun) -> None:
    """Print how many features abflow (``js_base="e"``) and Evidently agree on, and the others."""

    def says(drifted: bool) -> str:
        return "drifted" if drifted else "not drifted"

    differ = []
    gaps = []
    for feature in ours.features:
        verdict = theirs.columns.get(feature.feature)
        if verdict is None:
            differ.append(f"{feature.feature}: not in Evidently's report")
            continue
        if verdict.method == SAME_MEASURE.get(feature.method.value):
            gaps.append(
                abs(verdict.score - feature.statistic) / max(abs(feature.statistic), 1e-300)
            )
        if verdict.drifted != feature.drifted:
            differ.append(
                f"{feature.feature}: abflow {feature.method.value} {feature.statistic:.4f} "
                f"(threshold {feature.threshold:g}) {says(feature.drifted)}; Evidently "
                f"{verdict.method} {verdict.score:.4g} (threshold {verdict.threshold:g}) "
                f"{says(verdict.drifted)}"
            )
    total = len(ours.features)
    print(f"verdicts, abflow (js_base=e) and Evidently: {total - len(differ)} of {total} agree")
    for line in differ:
        print(f"  differs: {line}")
    if gaps:
        print(
            f"scores of the same measure ({len(gaps)} features): largest relative difference "
            f"{max(gaps):.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per sample")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement (best)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 2 repeats")
    parser.add_argument(
        "--evidently",
        action="store_true",
        help="time Evidently, building its environment first when it is not cached "
        "(without this flag a cached one is used, except with --quick)",
    )
    args = parser.parse_args()
    rows, repeats = (100_000, 2) if args.quick else (args.rows, args.repeats)
    columns = NUMERIC + CATEGORICAL
    print(
        f"generating {columns} columns x {rows:,} rows (reference and current); "
        f"load average {load_average()}..."
    )
    reference, current = make_samples(rows, seed=13)

    report = detect_drift(reference, current)
    baseline = scipy_baseline(reference, current)
    check_agreement(report, baseline)
    cpus = os.cpu_count() or 1
    assert detect_drift(reference, current, workers=cpus) == report, "threads change the report"
    t_arrays = best(repeats, lambda: detect_drift(reference, current))
    t_threads = best(repeats, lambda: detect_drift(reference, current, workers=cpus))
    t_lists = time_lists(reference, current, report, repeats)
    t_scipy = best(1, lambda: scipy_baseline(reference, current))  # slow: once is enough
    wanted = args.evidently or not args.quick  # --quick stays quick unless asked
    evidently = (
        measure_evidently(reference, current, repeats, build=args.evidently)
        if wanted
        else "not measured with --quick (add --evidently)"
    )

    task = f"{columns} columns x {rows:,} rows"
    print()
    print("| task | abflow | wall | CPU | baseline | wall | CPU | ratio (wall) | ratio (CPU) |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|")
    for label, ours in (
        ("numpy columns", t_arrays),
        (f"numpy columns, `workers={cpus}`", t_threads),
        ("Python lists", t_lists),
    ):
        print(
            f"| {task} | `detect_drift`, {label} | {ours[0]:.2f} s | {ours[1]:.2f} s "
            f"| SciPy column by column | {t_scipy[0]:.2f} s | {t_scipy[1]:.2f} s "
            f"| {t_scipy[0] / ours[0]:.1f}x | {t_scipy[1] / ours[1]:.1f}x |"
        )
    if isinstance(evidently, str):
        print(f"| {task} | | | | Evidently DataDriftPreset | {evidently} | | | |")
    else:
        print(
            f"| {task} | `detect_drift`, numpy columns | {t_arrays[0]:.2f} s "
            f"| {t_arrays[1]:.2f} s | Evidently {evidently.evidently_version} DataDriftPreset "
            f"| {evidently.wall_seconds:.2f} s | {evidently.cpu_seconds:.2f} s "
            f"| {evidently.wall_seconds / t_arrays[0]:.1f}x "
            f"| {evidently.cpu_seconds / t_arrays[1]:.1f}x |"
        )
        print(
            f"\nEvidently {evidently.evidently_version} with pandas {evidently.pandas_version} in "
            f"its own environment; not in its times: importing pandas and Evidently "
            f"{evidently.import_seconds:.2f} s, reading the Parquet files into DataFrames "
            f"{evidently.load_seconds:.2f} s"
        )
        compare_verdicts(detect_drift(reference, current, js_base="e"), evidently)
    print()
    print(
        f"drifted ({len(report.drifted)} of {columns}): {', '.join(report.drifted)}; "
        "statistics equal SciPy's to 1e-9"
    )
    if rows == 1_000_000:
        for label, (wall, cpu) in (("1 thread", t_arrays), (f"{cpus} threads", t_threads)):
            met = "met" if wall <= TARGET_SECONDS else "NOT met"
            print(
                f"target <= {TARGET_SECONDS:.0f} s, numpy columns, {label}: {met} "
                f"({wall:.2f} s wall, {cpu:.2f} s CPU; load average {os.getloadavg()[0]:.1f})"
            )


if __name__ == "__main__":
    main()
