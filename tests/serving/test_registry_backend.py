"""Registry references (``models:/NAME@ALIAS``) served for real, from an MLflow registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import gwmodels
import numpy as np
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment
from numpy.testing import assert_allclose

from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_registry_alias_serves_the_version_it_points_at(
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rng: np.random.Generator,
    empty_registry_db: Path,
) -> None:
    shutil.copy(empty_registry_db, tmp_path / "mlflow.db")  # migrated once per session
    monkeypatch.setenv("ABFLOW_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("ABFLOW_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from abflow.registry import register_model, resolve_model

    register_model("fraud", gwmodels.control(), alias="champion")
    register_model("fraud", gwmodels.challenger(), alias="challenger")
    recorded = resolve_model("models:/fraud@challenger").checksum
    spec = experiment(
        variants=[
            {"name": "champion", "model": "models:/fraud@champion"},
            {"name": "challenger", "model": "models:/fraud@challenger"},
        ],
        weights=[0.0, 1.0],
    )
    client = await make_client(
        spec, backends={"models:/fraud@challenger": BackendOptions(checksum=recorded)}
    )
    rows = rng.normal(size=(3, gwmodels.N_FEATURES)).tolist()
    body = (
        await client.post(
            "/v1/predict",
            json={"unit_id": "u1", "features": rows},
            headers=auth(tokens[Role.SERVICE]),
        )
    ).json()
    assert body["variant"] == "challenger"
    assert body["model_version"] == "fraud/2"
    assert body["is_fallback"] is False
    assert_allclose(body["prediction"], gwmodels.challenger().predict_proba(np.array(rows))[:, 1])
    described = await client.get("/v1/experiments/exp", headers=auth(tokens[Role.VIEWER]))
    checksums = {v["name"]: v["checksum"] for v in described.json()["variants"]}
    assert checksums["challenger"] == recorded
