"""Shared fixtures: a seeded random generator, and a real PostgreSQL server when one exists.

Also the Hypothesis profiles, chosen here once for the whole suite (HYPOTHESIS_PROFILE, else
``ci`` when CI is set, else ``dev``). No profile has a deadline: Hypothesis' default fails an
example that takes 200 ms, which a loaded 2-core machine misses on innocent code.
"""

from __future__ import annotations

import os

# One thread per native math library (OpenMP in scikit-learn's gradient boosting, OpenBLAS in
# numpy), set before numpy loads and inherited by every gateway and CLI the tests start. On a
# busy 2-core machine their default (one spinning thread per core) made a 0.4 s fit take 4-5 s;
# pytest -n 2 runs one process per core anyway. An explicit setting in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

HYPOTHESIS_PROFILES = {
    # Every example a test asks for, no deadline: a busy machine is slow, not wrong.
    "dev": settings(deadline=None),
    # CI: tests that keep Hypothesis' default (100) run 40 examples, derandomized so that a
    # failure reproduces; tests that set max_examples themselves keep their own figure.
    "ci": settings(
        deadline=None,
        max_examples=40,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    ),
    # Before a release or after touching statistics: ten times the default.
    "thorough": settings(deadline=None, max_examples=1000),
}
for _name, _profile in HYPOTHESIS_PROFILES.items():
    settings.register_profile(_name, _profile)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator with a fixed seed: every random test is reproducible."""
    return np.random.default_rng(20261126)


def _postgres_url() -> str:
    return os.environ.get("ABFLOW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a real PostgreSQL server; skipped without one, unless CI is set (then it fails)."""
    url = _postgres_url()
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "no server here"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but PostgreSQL at {url} is unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {url} (set ABFLOW_TEST_POSTGRES_URL): {exc}")
    return url


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards.

    Tests running at the same time (or a crashed earlier run) never see each other's tables.
    """
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        try:
            with admin.connect() as connection:
                # Bounded: a connection the test left open inside a transaction would block
                # the drop forever, and the whole run with it.
                connection.execute(sa.text("SET lock_timeout = '60s'"))
                connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        except sa.exc.OperationalError as exc:
            pytest.fail(f"schema {schema} still locked after 60 s (a connection left open?): {exc}")
        finally:
            admin.dispose()


@pytest.fixture(scope="session")
def feast_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A copy of examples/feast built by its own script (data, feast apply, materialize), and
    the pandas frame it materialised; one per session (it takes seconds). Skipped without
    Feast."""
    pytest.importorskip("feast")
    import importlib.util
    import shutil

    example = Path(__file__).resolve().parents[1] / "examples" / "feast"
    repo = tmp_path_factory.mktemp("feast") / "repo"
    shutil.copytree(example, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    spec = importlib.util.spec_from_file_location("example_make_data", repo / "make_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return repo, module.build(repo)


@pytest.fixture(scope="session")
def empty_registry_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite registry with its schema migrated, made once per session: copy
    it for a fresh registry (creating MLflow's schema takes seconds; a copy, milliseconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()
    client.search_registered_models()
    return path


# --- fault-injection figures (tests/faults) ------------------------------------------------

FaultFigure = Callable[..., None]

_FIGURES: list[str] = []
"""This process's figures; with pytest-xdist, each worker's reach the controller when the
worker ends (``workeroutput``), and the controller prints them all."""


@pytest.fixture
def fault_figure(request: pytest.FixtureRequest) -> FaultFigure:
    """Record one named measurement of this test: ``fault_figure(scenario, **numbers)``."""

    def record(scenario: str, **numbers: object) -> None:
        values = ", ".join(f"{name}={value}" for name, value in numbers.items())
        _FIGURES.append(f"{request.node.nodeid}: {scenario}: {values}")

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # a pytest-xdist worker: hand the figures over
        worker_output["fault_figures"] = list(_FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, in the controller: a worker ended; keep its figures."""
    del error
    _FIGURES.extend(getattr(node, "workeroutput", {}).get("fault_figures", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("fault-injection figures")
        for line in sorted(_FIGURES):
            terminalreporter.write_line(line)
