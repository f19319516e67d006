"""The live monitor's reference from the registry: the training sample of a model's run.

A real MLflow SQLite registry; the sample is logged as the training job would; the
monitor's feature drift for the variant served by that model is then measured against it,
checked here against abflow.drift on the same two samples read independently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from typer.testing import CliRunner

from abflow.drift import detect_drift
from abflow.events.sampling import FeatureSampler
from abflow.registry import register_model
from abflow.registry.training_data import REFERENCE_ARTIFACT_PATH, training_sample
from abflow.spec import parse_experiment
from abflow.store import EventStore
from abflow.store.monitoring import monitor_history

HOUR = 3600.0
START = 1_780_000_000.0 - 1_780_000_000.0 % HOUR


def log_sample(tracking_uri: str, run_id: str, frame: pd.DataFrame, folder: Path) -> None:
    from mlflow import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_sample.csv"
    frame.to_csv(path, index=False)
    MlflowClient(tracking_uri).log_artifact(run_id, str(path), REFERENCE_ARTIFACT_PATH)


def test_training_sample_of_a_version_and_the_monitor_uses_it(
    tracking_uri: str,
    fitted_models: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rng: np.random.Generator,
) -> None:
    with_sample = register_model("fraud", fitted_models["logistic"], tracking_uri=tracking_uri)
    without = register_model("fraud", fitted_models["tree"], tracking_uri=tracking_uri)
    assert with_sample.run_id is not None
    training = pd.DataFrame({"amount": rng.normal(0.0, 1.0, 800), "age": rng.normal(size=800)})
    log_sample(tracking_uri, with_sample.run_id, training, tmp_path / "job")

    got = training_sample("models:/fraud/1", tmp_path / "dl", tracking_uri=tracking_uri)
    assert got is not None
    pd.testing.assert_frame_equal(pd.read_csv(got), training)
    assert training_sample("models:/fraud/2", tmp_path / "dl2", tracking_uri=tracking_uri) is None
    assert training_sample("file:model.pkl", tmp_path / "dl3", tracking_uri=tracking_uri) is None
    del without

    # The challenger serves version 1 (a training sample), the control version 2 (none).
    spec = parse_experiment(
        {
            "key": "fraud",
            "variants": [
                {"name": "control", "model": "models:/fraud/2"},
                {"name": "challenger", "model": "models:/fraud/1"},
            ],
            "monitoring": {"sample_rate": 1.0, "window_hours": 1, "features": ["amount", "age"]},
        }
    )
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sampler = FeatureSampler(seed=3)
    with EventStore.open(url, upgrade=True) as store:
        store.register_experiment(spec)
        for hour, shift in enumerate([0.0, 0.7]):  # served inputs move away from training
            rows = []
            for variant in ("control", "challenger"):
                for i, row in enumerate(rng.normal(size=(400, 2)) + np.array([shift, 0.0])):
                    rows += sampler.offer(
                        config=spec.monitoring, experiment_key="fraud", phase=1,
                        variant=variant, model_version="1", request_id=f"{hour}-{variant}-{i}",
                        rows=row[None, :], outputs=[0.5], ts=START + hour * HOUR + i,
                    )  # fmt: skip
            store.write_events("sample", rows)
    monkeypatch.setenv("ABFLOW_MLFLOW_TRACKING_URI", tracking_uri)
    from abflow.cli.main import app

    result = CliRunner().invoke(app, ["monitor", "fraud", "--once", "--store", url])
    assert result.exit_code in (0, 1), result.output
    with EventStore.open(url) as store:
        history = monitor_history(store, "fraud")
        frame = pd.read_sql_table("feature_samples", store.engine)
    first = [r for r in history if r.kind == "feature_drift" and r.window_start == START]
    # Against its training sample, the challenger's first window is measured (a fresh draw of
    # the same distribution); the control's first window is its own reference (PSI 0).
    for record in first:
        mine = frame[(frame.window_start == START) & (frame.variant == record.variant)]
        rows = [orjson.loads(text) for text in mine.sort_values("priority").features_json]
        current = {"amount": [r[0] for r in rows], "age": [r[1] for r in rows]}
        if record.variant == "challenger":
            reference = {name: list(training[name]) for name in ("amount", "age")}
        else:
            reference = current
        expected = detect_drift(reference, current, method="psi")
        (verdict,) = [f for f in expected.features if f.feature == record.feature]
        assert_allclose(record.value, verdict.statistic)
        assert record.n_reference == (800 if record.variant == "challenger" else 400)
