"""Registry fixtures: a real MLflow SQLite registry per test, without paying for migrations.

Creating MLflow's SQLite schema takes seconds, so one empty, migrated database is made per
session (``empty_registry_db`` in tests/conftest.py) and copied for every test (a fresh,
isolated registry in a fraction of a second).
Tracking URIs are passed explicitly; the environment variables are cleared so that no test
reads a registry it did not create.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest


class ConstantModel:
    """Stand-in for a non-sklearn model: pyfunc flavour, ``predict`` only."""


def _fresh_registry(folder: Path, template: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _no_ambient_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABFLOW_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ABFLOW_MLFLOW_ARTIFACT_ROOT", raising=False)


@pytest.fixture
def tracking_uri(tmp_path: Path, empty_registry_db: Path) -> str:
    """A fresh, empty registry in this test's tmp_path."""
    return _fresh_registry(tmp_path / "registry", empty_registry_db)


@pytest.fixture(scope="module")
def training_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=300, n_features=4, random_state=11)
    return x, y


@pytest.fixture(scope="module")
def fitted_models(training_data: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    x, y = training_data
    return {
        "logistic": LogisticRegression().fit(x, y),
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y),
    }


@pytest.fixture(scope="module")
def shared_registry(
    tmp_path_factory: pytest.TempPathFactory,
    empty_registry_db: Path,
    fitted_models: dict[str, Any],
) -> Iterator[str]:
    """One registry per module with ``fraud`` v1 (logistic, champion) and v2 (tree, challenger).

    Read-only: tests that change the registry or its files use ``tracking_uri`` instead.
    """
    from abflow.registry import register_model

    with pytest.MonkeyPatch.context() as mp:
        for name in ("ABFLOW_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        uri = _fresh_registry(tmp_path_factory.mktemp("shared-registry"), empty_registry_db)
        register_model("fraud", fitted_models["logistic"], alias="champion", tracking_uri=uri)
        register_model("fraud", fitted_models["tree"], alias="challenger", tracking_uri=uri)
        yield uri
