"""Evidently's DataDriftPreset on two Parquet files, timed inside Evidently's own environment.

    EVIDENTLY_PYTHON bench/evidently_preset.py FOLDER REPEATS

Reads ``FOLDER/reference.parquet`` and ``FOLDER/current.parquet`` into pandas DataFrames and
prints one JSON object: the versions, the time to import pandas and Evidently and the time to
load the files (apart, so the preset's own time is not blurred by them), the best wall and
process CPU time of ``REPEATS`` runs of the preset, and each column's method, score,
threshold and verdict as Evidently decides it. ``bench/evidently_env.py`` starts it; it
imports nothing from abflow or the benchmarks, which are not installed there.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def verdicts(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each column's method, score and threshold, and whether Evidently's own test failed.

    The preset's tests carry the verdict, so whether a score drifts (a distance at or above
    its threshold, a p-value below it) is Evidently's decision, not re-derived here.
    """
    columns: dict[str, dict[str, Any]] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            columns[config["column"]] = {
                "method": config["method"],
                "score": float(metric["value"]),
                "threshold": float(config["threshold"]),
            }
    for test in snapshot["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            columns[params["column"]]["drifted"] = test["status"] == "FAIL"
    return columns


def main() -> None:
    folder, repeats = Path(sys.argv[1]), int(sys.argv[2])
    started = time.perf_counter()
    import evidently  # type: ignore[import-not-found]
    import pandas as pd  # type: ignore[import-untyped]
    from evidently import Report
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]

    imported = time.perf_counter()
    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    loaded = time.perf_counter()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    result = {
        "evidently": evidently.__version__,
        "pandas": pd.__version__,
        "import_seconds": imported - started,
        "load_seconds": loaded - imported,
        "wall_seconds": min(walls),
        "cpu_seconds": min(cpus),
        "columns": verdicts(snapshot.dict()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
