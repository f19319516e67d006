"""register_model, set_alias, list_models and list_versions against a real MLflow registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

from abflow.errors import InvalidArgumentError, ModelNotFoundError
from abflow.registry import (
    CHECKSUM_TAG,
    artifact_checksum,
    list_models,
    list_versions,
    register_model,
    resolve_model,
    set_alias,
)


def _mlflow(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_pyfunc_model_loads_as_pyfunc_without_predict_proba(
    tracking_uri: str, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    folder = tmp_path / "doubler"
    mlflow.pyfunc.save_model(
        str(folder),
        loader_module="doubler_flavor",
        code_paths=[str(Path(__file__).with_name("doubler_flavor.py"))],
        pip_requirements=["numpy"],
    )
    info = register_model("doubler", folder, tracking_uri=tracking_uri)
    resolved = resolve_model("models:/doubler/1", tracking_uri=tracking_uri)
    assert info.version == "1"
    assert resolved.flavor == "pyfunc"
    assert not resolved.has_predict_proba
    x = np.array([[1.0, -2.0], [0.5, 4.0]])
    assert_allclose(np.asarray(resolved.predictor.predict(x)), x * 2.0)


def test_register_from_folder_and_from_uri_keep_the_same_bytes(
    tracking_uri: str, tmp_path: Path, fitted_models: dict[str, Any]
) -> None:
    import mlflow.sklearn

    folder = tmp_path / "saved"
    mlflow.sklearn.save_model(
        fitted_models["tree"],
        str(folder),
        serialization_format="cloudpickle",
        pip_requirements=["scikit-learn"],
    )
    from_folder = register_model("tree", folder, tracking_uri=tracking_uri)
    # Register the same run artifact again by URI: a second version over identical files.
    from_uri = register_model(
        "tree", f"runs:/{from_folder.run_id}/model", tracking_uri=tracking_uri
    )
    assert (from_folder.version, from_uri.version) == ("1", "2")
    assert from_folder.tags[CHECKSUM_TAG] == artifact_checksum(folder)
    assert from_uri.tags[CHECKSUM_TAG] == from_folder.tags[CHECKSUM_TAG]
    assert from_uri.run_id == from_folder.run_id


def test_register_rejects_what_it_cannot_store(tracking_uri: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot register a dict"):
        register_model("x", {"not": "a model"}, tracking_uri=tracking_uri)
    with pytest.raises(InvalidArgumentError, match="is not an MLflow model folder or a model URI"):
        register_model("x", str(tmp_path / "missing"), tracking_uri=tracking_uri)
    with pytest.raises(InvalidArgumentError, match="no MLmodel file"):
        register_model("x", tmp_path, tracking_uri=tracking_uri)
    with pytest.raises(InvalidArgumentError, match="contain no '/'"):
        register_model("a/b", tmp_path, tracking_uri=tracking_uri)


def test_alias_moves_are_recorded_with_their_previous_version(
    tracking_uri: str, fitted_models: dict[str, Any]
) -> None:
    register_model("fraud", fitted_models["logistic"], alias="champion", tracking_uri=tracking_uri)
    register_model("fraud", fitted_models["tree"], tracking_uri=tracking_uri)
    change = set_alias("fraud", "champion", 2, reason="won test-7", tracking_uri=tracking_uri)
    assert (change.version, change.previous_version, change.reason) == ("2", "1", "won test-7")
    assert resolve_model("models:/fraud@champion", tracking_uri=tracking_uri).version == "2"

    client = _mlflow(tracking_uri)
    experiment = client.get_experiment_by_name("abflow/registry")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    moves = [(r.data.params["version"], r.data.params["previous_version"]) for r in runs]
    assert moves == [("1", ""), ("2", "1")]
    assert runs[-1].data.params["reason"] == "won test-7"


def test_alias_to_a_missing_version_changes_nothing(
    tracking_uri: str, fitted_models: dict[str, Any]
) -> None:
    register_model("fraud", fitted_models["logistic"], alias="champion", tracking_uri=tracking_uri)
    with pytest.raises(ModelNotFoundError, match=r"cannot move alias fraud@champion to version 7"):
        set_alias("fraud", "champion", 7, tracking_uri=tracking_uri)
    assert resolve_model("models:/fraud@champion", tracking_uri=tracking_uri).version == "1"


def test_list_models_and_versions(shared_registry: str) -> None:
    models = list_models(tracking_uri=shared_registry)
    assert [m.name for m in models] == ["fraud"]
    assert models[0].aliases == {"champion": "1", "challenger": "2"}
    assert models[0].latest_version == "2"
    versions = list_versions("fraud", tracking_uri=shared_registry)
    assert [v.version for v in versions] == ["1", "2"]
    assert versions[0].created_at <= versions[1].created_at
    assert versions[0].aliases == ("champion",)
    with pytest.raises(ModelNotFoundError):
        list_versions("ghost", tracking_uri=shared_registry)


def test_embedded_default_lives_under_dot_abflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_registry_db: Path
) -> None:
    import shutil

    from abflow.registry import registry_location

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".abflow").mkdir()
    shutil.copy(empty_registry_db, tmp_path / ".abflow" / "mlflow.db")
    location = registry_location()
    assert location.tracking_uri == f"sqlite:///{tmp_path.resolve() / '.abflow' / 'mlflow.db'}"
    assert location.artifact_root == (tmp_path / ".abflow" / "mlartifacts").as_uri()
    assert list_models() == []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert registry_location().tracking_uri == "http://127.0.0.1:5000"
    monkeypatch.setenv("ABFLOW_MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert registry_location().tracking_uri == "http://127.0.0.1:5001"
    assert registry_location().artifact_root is None


@pytest.mark.slow  # 20 s at load 10: fresh interpreters that import MLflow
def test_mlflow_telemetry_is_off_unless_asked_for(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # Importing abflow changes no environment; its first registry call sets MLflow's defaults.
    code = (
        "import os, abflow.registry.connection as r; before = 'MLFLOW_DISABLE_TELEMETRY' in os.environ; "
        f"r.client_for('sqlite:///{tmp_path}/mlflow.db'); "
        "import mlflow.telemetry.utils as u; print(before, u.is_telemetry_disabled())"
    )
    # Outside pytest and CI, where MLflow would switch its telemetry on by itself.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTEST_CURRENT_TEST", "CI"}}
    env.pop("MLFLOW_DISABLE_TELEMETRY", None)
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert default.stdout.strip() == "False True", default.stderr
    opted_in = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "MLFLOW_DISABLE_TELEMETRY": "false"},
        capture_output=True,
        text=True,
    )
    assert opted_in.stdout.strip() == "True False", opted_in.stderr
