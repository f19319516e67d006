"""Separate virtual environments for the tests, built once and cached.

Airflow, Prefect, MLServer and pyspark cannot share abflow's environment (Airflow pins
packages abflow needs newer, MLServer wants its own uvloop and sklearn runtime, pyspark a
JVM of its own): the tests run them there, and abflow from the main environment across the
CLI or HTTP. Each test folder keeps the pinned ``requirements-<name>.txt`` of its
environments.
Each environment lives in ``$ABFLOW_TEST_ENVS`` (default ``~/.cache/abflow-test-envs``) under
a name that hashes its pinned requirements and the Python version, so a changed pin builds a
new one and later runs reuse it. A build that fails (no network) skips the tests, or fails
them when ``CI`` is set.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

INTEGRATIONS = Path(__file__).parent / "integrations"
BUILD_TIMEOUT_SECONDS = 1200
STAMP = ".abflow-complete"


def envs_root() -> Path:
    """Where the cached environments live."""
    configured = os.environ.get("ABFLOW_TEST_ENVS")
    return Path(configured) if configured else Path.home() / ".cache" / "abflow-test-envs"


def env_path(name: str, folder: Path = INTEGRATIONS) -> Path:
    """The folder of environment ``name`` for its requirements file in ``folder``."""
    requirements = folder / f"requirements-{name}.txt"
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return envs_root() / f"{name}-{digest.hexdigest()[:12]}"


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _build_commands(target: Path, requirements: Path) -> list[list[str]]:
    python = target / "bin" / "python"
    uv = _uv()
    if uv:
        return [
            [uv, "venv", "--quiet", "--python", sys.executable, str(target)],
            [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)],
        ]
    return [
        [sys.executable, "-m", "venv", str(target)],
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
    ]


def ensure_env(name: str, folder: Path = INTEGRATIONS) -> Path:
    """The built environment ``name``; builds it under a lock when it is not there yet."""
    target = env_path(name, folder)
    if (target / STAMP).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same one
        if (target / STAMP).exists():
            return target
        shutil.rmtree(target, ignore_errors=True)  # a half-built one from an interrupted run
        started = time.monotonic()
        for command in _build_commands(target, folder / f"requirements-{name}.txt"):
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS
                )
            except subprocess.TimeoutExpired:
                _cannot_build(name, f"{command[:3]} took over {BUILD_TIMEOUT_SECONDS} s")
            if done.returncode != 0:
                _cannot_build(name, f"{' '.join(command[:3])}: {done.stderr.strip()[-1500:]}")
        seconds = time.monotonic() - started
        (target / STAMP).write_text(f"built in {seconds:.0f} s\n")
    return target


def _cannot_build(name: str, reason: str) -> None:
    msg = f"could not build the {name} test environment (is PyPI reachable?): {reason}"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def abflow_bin() -> Path:
    """The main environment's abflow executable, which the orchestrators call."""
    found = Path(sys.executable).parent / "abflow"
    assert found.exists(), f"no abflow executable beside {sys.executable}"
    return found
