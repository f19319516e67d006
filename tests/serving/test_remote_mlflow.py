"""The gateway in front of MLflow's real scoring server (``mlflow models serve``).

The served model has a DataFrame signature (columns f0..f3), the common case, and was
logged with ``pyfunc_predict_fn="predict_proba"``, so the server answers ``[[p0, p1]]``.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from gateway_support import (
    AppFactory,
    MemoryEvents,
    auth,
    metric_samples,
    predict_each,
    remote_experiment,
)
from mlflow_server import COLUMNS, ServedModel

from abflow.registry.resolve import input_columns
from abflow.security.roles import Role
from abflow.serving.backends import BackendOptions

# slow: the scoring server takes 15-30 s to start on a busy machine (once per session: the
# `served` fixture of conftest.py).
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

N_REQUESTS = 12


def _fallback_counts(text: str) -> dict[str, float]:
    return {
        sample.labels["reason"]: sample.value
        for sample in metric_samples(text, "abflow_fallbacks_total")
    }


def test_signature_columns_are_read_from_the_run(
    served: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
    assert input_columns(served.reference) == COLUMNS


@pytest.mark.parametrize("source", ["columns", "signature_from"])
async def test_dataframe_signature_model_answers_like_its_own_predict_proba(
    served: ServedModel,
    source: str,
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
    options = (
        BackendOptions(columns=list(COLUMNS), output="proba", class_index=1)
        if source == "columns"
        else BackendOptions(signature_from=served.reference, output="proba", class_index=1)
    )
    client = await make_client(remote_experiment(served.url), backends={served.url: options})
    rows = rng.normal(size=(N_REQUESTS, len(COLUMNS)))
    bodies = await predict_each(client, tokens[Role.SERVICE], rows)

    model = joblib.load(served.pickle_path)
    # One request, one row, one frame built from lists, as the server builds it: BLAS rounds
    # a 12-row or C-ordered call differently (by 1 ulp) from the call the server makes.
    expected = [
        float(model.predict_proba(pd.DataFrame([row], columns=list(COLUMNS)))[0, 1])
        for row in rows.tolist()
    ]
    assert [b["is_fallback"] for b in bodies] == [False] * N_REQUESTS
    assert [b["variant"] for b in bodies] == ["remote"] * N_REQUESTS
    assert [b["prediction"] for b in bodies] == expected  # bit for bit
    predictions = events.rows["prediction"]
    assert [p["score"] for p in predictions] == expected
    assert [p["error"] for p in predictions] == [None] * N_REQUESTS


async def test_a_refused_payload_falls_back_and_says_why(
    served: ServedModel,
    make_client: AppFactory,
    tokens: dict[Role, str],
    events: MemoryEvents,
    rng: np.random.Generator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No columns: abflow sends {"inputs": rows}, which the signature refuses (HTTP 400).
    options = BackendOptions(failure_threshold=1000)  # keep the circuit closed: one reason
    client = await make_client(remote_experiment(served.url), backends={served.url: options})
    with caplog.at_level(logging.WARNING, logger="abflow.serving.gateway"):
        bodies = await predict_each(client, tokens[Role.SERVICE], rng.normal(size=(N_REQUESTS, 4)))

    assert [b["is_fallback"] for b in bodies] == [True] * N_REQUESTS
    errors = [p["error"] for p in events.rows["prediction"]]
    assert len(errors) == N_REQUESTS
    prefix = f"status_4xx: model server {served.url} answered 400: "
    for error in errors:
        assert error.startswith(prefix)
        assert "Model is missing inputs ['f0', 'f1', 'f2', 'f3']" in error
        assert len(error) - len(prefix) == 500  # MLflow's body is longer: its first 500 kept
    metrics = (await client.get("/metrics", headers=auth(tokens[Role.VIEWER]))).text
    assert _fallback_counts(metrics) == {"status_4xx": float(N_REQUESTS)}
    # Rate-limited: the twelve failures within seconds give one log line.
    lines = [r for r in caplog.records if "fell back to control" in r.getMessage()]
    assert len(lines) == 1
    assert "status_4xx" in lines[0].getMessage()


def _registration(url: str) -> dict[str, Any]:
    return {
        "key": "probed",
        "unit": "user_id",
        "variants": [
            {"name": "control", "model": "python:gwmodels:control"},
            {"name": "remote", "model": url},
        ],
        "weights": [0.5, 0.5],
    }


async def test_registering_a_challenger_with_the_wrong_columns_is_a_422_quoting_mlflow(
    served: ServedModel, make_client: AppFactory, tokens: dict[Role, str]
) -> None:
    wrong = ["a", "b", "c", "d"]
    client = await make_client(backends={served.url: BackendOptions(columns=wrong)})
    response = await client.post(
        "/v1/experiments",
        json=_registration(served.url),
        headers=auth(tokens[Role.EXPERIMENTER]),
    )
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    # What MLflow's server answers to the same frame, sent to it directly.
    direct = httpx.post(
        served.url, json={"dataframe_split": {"columns": wrong, "data": [[0.0] * 4]}}, timeout=60
    )
    assert direct.status_code == 400
    assert "Model is missing inputs ['f0', 'f1', 'f2', 'f3']" in direct.text
    assert problem == (
        "variants[1].model: the probe row (a row of 4 zeros) was refused: "
        f"model server {served.url} answered 400: {direct.text[:500]}"
    )


async def test_registering_with_the_signature_columns_probes_and_serves(
    served: ServedModel,
    make_client: AppFactory,
    tokens: dict[Role, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
    options = BackendOptions(signature_from=served.reference, output="proba", class_index=1)
    client = await make_client(backends={served.url: options})
    response = await client.post(
        "/v1/experiments",
        json=_registration(served.url),
        headers=auth(tokens[Role.EXPERIMENTER]),
    )
    assert response.status_code == 201, response.text
    assert (await client.get("/readyz")).json()["failing_backends"] == []
