"""Evidently in a virtual environment of its own, built once and cached, run on Parquet files.

Evidently 0.7 needs pandas < 3 and pins packages of its own, so it never goes into abflow's
environment. ``ensure_env`` builds one (uv, else venv and pip) under ``$ABFLOW_BENCH_ENVS``
(default ``~/.cache/abflow-bench``) in a folder named after the Evidently series and a hash
of the pins and the Python version: a changed pin builds a new one, later runs reuse it. The
build holds a file lock (two runs at once build it once) and happens in a temporary folder
renamed into place when complete, so a folder under the final name is always whole.

``run_preset`` writes the benchmark's samples to Parquet and runs ``evidently_preset.py`` in
that environment, which reads them into pandas DataFrames and reports times and verdicts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "ColumnVerdict",
    "EvidentlyRun",
    "EvidentlyUnavailableError",
    "cached_env",
    "ensure_env",
    "envs_root",
    "run_preset",
]

SERIES = "0.7"
REQUIREMENTS = (f"evidently=={SERIES}.*", "pandas<3", "pyarrow")
BUILD_TIMEOUT_SECONDS = 1200
RUN_TIMEOUT_SECONDS = 3 * 3600  # 0.7 took 100-154 s a run on 25 x 1M; leave room for load
PRESET_SCRIPT = Path(__file__).with_name("evidently_preset.py")


class EvidentlyUnavailableError(RuntimeError):
    """Evidently's environment cannot be built, or its run failed."""


@dataclass(frozen=True)
class ColumnVerdict:
    """Evidently's verdict on one column."""

    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class EvidentlyRun:
    """One measurement of DataDriftPreset; times in seconds, the preset's apart from set-up."""

    evidently_version: str
    pandas_version: str
    import_seconds: float
    load_seconds: float
    wall_seconds: float
    cpu_seconds: float
    columns: dict[str, ColumnVerdict]

    @property
    def drifted(self) -> set[str]:
        return {name for name, verdict in self.columns.items() if verdict.drifted}


def envs_root() -> Path:
    """Where the benchmarks' cached environments live."""
    configured = os.environ.get("ABFLOW_BENCH_ENVS")
    return Path(configured) if configured else Path.home() / ".cache" / "abflow-bench"


def _env_path() -> Path:
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return envs_root() / f"evidently-{SERIES}-{digest.hexdigest()[:12]}"


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def cached_env() -> Path | None:
    """The environment's Python when it has been built, else None (nothing is built here)."""
    python = _python(_env_path())
    return python if python.exists() else None


def _build_commands(target: Path) -> list[list[str]]:
    python = str(_python(target))
    beside = Path(sys.executable).parent / "uv"
    uv = str(beside) if beside.exists() else shutil.which("uv")
    if uv:
        return [
            [uv, "venv", "--quiet", "--python", sys.executable, str(target)],
            [uv, "pip", "install", "--quiet", "--python", python, *REQUIREMENTS],
        ]
    return [
        [sys.executable, "-m", "venv", str(target)],
        [python, "-m", "pip", "install", "--quiet", *REQUIREMENTS],
    ]


def ensure_env() -> Path:
    """The environment's Python, building the environment first when it is not there yet."""
    target = _env_path()
    if _python(target).exists():
        return _python(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same one
        if _python(target).exists():
            return _python(target)
        building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            started = time.monotonic()
            for command in _build_commands(building):
                _build_step(command)
            seconds = time.monotonic() - started
            (building / "abflow-build.txt").write_text(
                f"built in {seconds:.0f} s: {' '.join(REQUIREMENTS)}\n"
            )
            building.chmod(0o755)  # mkdtemp made it private; the cache is for every user
            # The interpreter finds its packages from where it is run, so the move is safe.
            building.rename(target)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return _python(target)


def _checked_run(
    command: list[str], what: str, timeout: float, env: Mapping[str, str] | None = None
) -> str:
    """Run ``command``; its standard output, or EvidentlyUnavailableError naming ``what``."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        msg = f"{what} took over {timeout:g} s"
        raise EvidentlyUnavailableError(msg) from None
    if done.returncode != 0:
        msg = f"{what} failed (exit {done.returncode}): {_last_words(done.stderr)}"
        raise EvidentlyUnavailableError(msg)
    return done.stdout


def _build_step(command: list[str]) -> None:
    step = " ".join(Path(part).name if i == 0 else part for i, part in enumerate(command[:3]))
    _checked_run(command, step, BUILD_TIMEOUT_SECONDS)


def _last_words(stderr: str) -> str:
    """The end of a child's error output on one line, to fit a table cell."""
    return " ".join(stderr.split())[-1500:]


def _write_parquet(columns: Mapping[str, Any], path: Path) -> None:
    # NaN stays a float NaN and None becomes a null: pandas reads them back as the bench made them.
    pq.write_table(pa.table({name: pa.array(values) for name, values in columns.items()}), path)


def run_preset(
    python: Path, reference: Mapping[str, Any], current: Mapping[str, Any], repeats: int
) -> EvidentlyRun:
    """Time DataDriftPreset (best of ``repeats``) on the samples, in Evidently's environment."""
    with tempfile.TemporaryDirectory(prefix="abflow-bench-evidently-") as folder:
        _write_parquet(reference, Path(folder) / "reference.parquet")
        _write_parquet(current, Path(folder) / "current.parquet")
        stdout = _checked_run(
            [str(python), str(PRESET_SCRIPT), folder, str(repeats)],
            PRESET_SCRIPT.name,
            RUN_TIMEOUT_SECONDS,
            env={**os.environ, "DO_NOT_TRACK": "1"},  # Evidently's opt-out of usage reports
        )
    found = json.loads(stdout.strip().splitlines()[-1])
    return EvidentlyRun(
        evidently_version=found["evidently"],
        pandas_version=found["pandas"],
        import_seconds=found["import_seconds"],
        load_seconds=found["load_seconds"],
        wall_seconds=found["wall_seconds"],
        cpu_seconds=found["cpu_seconds"],
        columns={name: ColumnVerdict(**verdict) for name, verdict in found["columns"].items()},
    )
