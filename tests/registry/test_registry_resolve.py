"""resolve_model against a real MLflow registry: versions, aliases, runs, flavours, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

from abflow.errors import InvalidArgumentError, ModelNotFoundError, RegistryError
from abflow.registry import (
    CHECKSUM_TAG,
    artifact_checksum,
    describe_version,
    parse_reference,
    resolve_model,
)


def test_alias_resolves_to_the_version_it_points_at(
    shared_registry: str, fitted_models: dict[str, Any], training_data: tuple[np.ndarray, Any]
) -> None:
    x, _ = training_data
    champion = resolve_model("models:/fraud@champion", tracking_uri=shared_registry)
    challenger = resolve_model("models:/fraud@challenger", tracking_uri=shared_registry)
    assert (champion.name, champion.version) == ("fraud", "1")
    assert (challenger.name, challenger.version) == ("fraud", "2")
    assert champion.flavor == "sklearn"
    assert champion.has_predict_proba
    assert_allclose(champion.predictor.predict_proba(x), fitted_models["logistic"].predict_proba(x))
    assert_allclose(challenger.predictor.predict(x), fitted_models["tree"].predict(x))


def test_version_and_latest_and_alias_agree(shared_registry: str) -> None:
    by_version = resolve_model("models:/fraud/2", tracking_uri=shared_registry)
    latest = resolve_model("models:/fraud/latest", tracking_uri=shared_registry)
    by_alias = resolve_model("models:/fraud@challenger", tracking_uri=shared_registry)
    assert by_version.version == latest.version == by_alias.version == "2"
    assert by_version.checksum == latest.checksum == by_alias.checksum
    assert by_version.reference == "models:/fraud/2"
    assert by_alias.reference == "models:/fraud@challenger"


def test_record_fields_match_the_registry(shared_registry: str) -> None:
    from mlflow import MlflowClient

    resolved = resolve_model("models:/fraud/1", tracking_uri=shared_registry)
    mv = MlflowClient(tracking_uri=shared_registry, registry_uri=shared_registry).get_model_version(
        "fraud", "1"
    )
    assert resolved.created_at == datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
    assert abs(resolved.created_at - datetime.now(tz=UTC)) < timedelta(minutes=10)
    assert resolved.source == mv.source
    assert resolved.run_id == mv.run_id
    # The checksum is over the files actually loaded, and equals the one recorded at registration.
    assert resolved.checksum == artifact_checksum(resolved.artifact_path)
    assert resolved.checksum == mv.tags[CHECKSUM_TAG]
    assert (resolved.artifact_path / "MLmodel").is_file()


def test_runs_reference_loads_the_run_artifact(
    shared_registry: str, fitted_models: dict[str, Any], training_data: tuple[np.ndarray, Any]
) -> None:
    x, _ = training_data
    info = describe_version("models:/fraud/1", tracking_uri=shared_registry)
    assert info.run_id is not None
    resolved = resolve_model(f"runs:/{info.run_id}/model", tracking_uri=shared_registry)
    assert resolved.version == info.run_id
    assert resolved.checksum == info.tags[CHECKSUM_TAG]
    assert_allclose(resolved.predictor.predict(x), fitted_models["logistic"].predict(x))


@pytest.mark.parametrize(
    ("reference", "error"),
    [
        ("models:/fraud/9", ModelNotFoundError),
        ("models:/fraud@nobody", ModelNotFoundError),
        ("models:/ghost/1", ModelNotFoundError),
        ("models:/ghost@champion", ModelNotFoundError),
        ("models:/ghost/latest", ModelNotFoundError),
        ("runs:/0123456789abcdef0123456789abcdef/model", ModelNotFoundError),
    ],
)
def test_missing_things_raise_model_not_found(
    shared_registry: str, reference: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        resolve_model(reference, tracking_uri=shared_registry)
    assert isinstance(caught.value, RegistryError)
    assert isinstance(caught.value, LookupError)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("reference", ["fraud", "models:/fraud", "file:model.pkl", "runs:/abc"])
def test_malformed_references_are_rejected_before_any_io(reference: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not a registry reference"):
        parse_reference(reference)


def test_parse_reference_fields() -> None:
    assert parse_reference("models:/fraud/12").version == "12"
    assert parse_reference("models:/fraud@champion").alias == "champion"
    run = parse_reference("runs:/abc123/nested/model")
    assert (run.run_id, run.path) == ("abc123", "nested/model")


def test_foreign_errors_are_translated_once_at_the_boundary() -> None:
    from mlflow.exceptions import MlflowException

    from abflow.registry.connection import mlflow_errors

    internal = MlflowException("disk on fire\nmore detail", error_code="INTERNAL_ERROR")
    boundary = mlflow_errors("loading x")
    with pytest.raises(RegistryError, match=r"^loading x: disk on fire$") as caught, boundary:
        raise internal
    assert not isinstance(caught.value, ModelNotFoundError)
    assert caught.value.__cause__ is internal
    with (
        pytest.raises(RegistryError, match=r"loading x: \[Errno 2\] gone"),
        mlflow_errors("loading x"),
    ):
        raise OSError(2, "gone")
    # Programming errors are not the registry's failures: they pass through untouched.
    with pytest.raises(KeyError), mlflow_errors("loading x"):
        raise KeyError(0)


def test_a_pyfunc_with_named_columns_is_called_with_its_columns(tracking_uri: str) -> None:
    """MLflow's usual signature, infer_signature(frame, …), names the columns: the gateway's
    bare feature matrix then failed every request ("Model is missing inputs ['f0', …]")
    and each fell back to the control."""
    import mlflow
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    from abflow.serving.backends.local import load_model, predict_outputs

    class Scorer(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return (model_input["f0"] * 2 + model_input["f2"]).to_numpy()

    frame = pd.DataFrame(np.arange(12.0).reshape(4, 3), columns=["f0", "f1", "f2"])
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=Scorer(),
            signature=infer_signature(frame, np.zeros(len(frame))),
            input_example=frame.head(1),
            registered_model_name="scorer",
        )
    loaded = load_model("models:/scorer/1")
    assert loaded.predictor.n_features_in_ == 3  # the width registration checks
    rows = frame.to_numpy()
    assert predict_outputs(loaded.predictor, rows) == (rows[:, 0] * 2 + rows[:, 2]).tolist()
