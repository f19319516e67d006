"""Probabilities become the score for in-process models too: an MLflow pyfunc logged with
``predict_fn="predict_proba"`` has only ``predict``, answering ``[[p0, p1], ...]``."""

from __future__ import annotations

from typing import Any

import gwmodels
import numpy as np
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment

from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions, build_backend

pytestmark = pytest.mark.anyio


class ProbaOnlyPredict:
    """Like a pyfunc wrapping predict_proba: ``predict`` returns class probabilities."""

    n_features_in_ = gwmodels.N_FEATURES
    model_version = "pyfunc-proba-1"

    def __init__(self) -> None:
        self.model = gwmodels.challenger()

    def predict(self, rows: Any) -> Any:
        return self.model.predict_proba(rows)


def proba_only() -> ProbaOnlyPredict:
    return ProbaOnlyPredict()


async def test_pyfunc_probabilities_become_the_event_score(
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
) -> None:
    spec = experiment(
        variants=[
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "pyfunc", "model": "python:test_remote_inprocess_scores:proba_only"},
        ],
        weights=[0.0, 1.0],
    )
    client = await make_client(spec)
    rows = rng.normal(size=(8, gwmodels.N_FEATURES))
    for i, row in enumerate(rows):
        response = await client.post(
            "/v1/predict",
            json={"unit_id": f"u{i}", "features": row.tolist()},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert response.status_code == 200, response.text
    expected = [float(gwmodels.challenger().predict_proba(row[None, :])[0, 1]) for row in rows]
    assert [p["score"] for p in events.rows["prediction"]] == expected


async def test_class_index_picks_the_class_in_process(rng: np.random.Generator) -> None:
    rows = rng.normal(size=(6, gwmodels.N_FEATURES))
    proba = gwmodels.challenger().predict_proba(rows)
    for reference in (
        "python:gwmodels:challenger",
        "python:test_remote_inprocess_scores:proba_only",
    ):
        backend = build_backend(reference, BackendOptions(output="proba", class_index=0))
        try:
            assert await backend.predict(rows) == proba[:, 0].tolist()
        finally:
            await backend.aclose()
