"""A gateway whose experiment reads its features from Feast (the local provider, the example
repo materialised by the session's ``feast_repo`` fixture).

Both variants of one request, the served model and its shadow copy, score the vector the
online store holds for the unit (checked against the pandas frame the repo was built from);
their logged hashes are equal; an unknown entity is a 422 naming the feature and the entity,
or takes the configured defaults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from gateway_support import MemoryEvents, auth, logged_predictions, serve
from scipy.special import expit

from abflow.errors import ConfigError
from abflow.features import feature_vector_hash
from abflow.security.roles import Role
from abflow.security.tokens import InMemoryTokenStore
from abflow.serving.app import create_app
from abflow.serving.catalog import InMemoryCatalog
from abflow.serving.features import FeatureSourceEntry
from abflow.serving.settings import GatewayConfig, GatewaySettings, load_config
from abflow.spec import parse_experiment

pytestmark = pytest.mark.anyio

REFS = ["user_stats:txn_count_7d", "user_stats:avg_amount_7d"]
NAMES = ["txn_count_7d", "avg_amount_7d"]
POSITIONS = ["0", "1"]  # the logged hash names the positions of the row the models score


class Linear:
    """Scores ``weights . row``; two of them stand for champion and challenger."""

    n_features_in_ = 2

    def __init__(self, weights: list[float], version: str) -> None:
        self.weights = np.asarray(weights)
        self.model_version = version

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows @ self.weights)


champion = Linear([0.01, 0.002], "champion-1")
challenger = Linear([0.03, -0.001], "challenger-1")


def _spec(key: str) -> Any:
    return parse_experiment(
        {
            "key": key,
            "unit": "user_id",
            "variants": [
                {"name": "champion", "model": "python:test_gateway_features_feast:champion"},
                {"name": "challenger", "model": "python:test_gateway_features_feast:challenger"},
            ],
            "weights": [1.0, 0.0],
        }
    )


def _latest(frame: pd.DataFrame, user_id: int) -> list[Any]:
    rows = frame[frame["user_id"] == user_id].sort_values("event_timestamp")
    last = rows.iloc[-1]
    return [int(last["txn_count_7d"]), float(last["avg_amount_7d"])]


@asynccontextmanager
async def _gateway(
    config: GatewayConfig, events: MemoryEvents, tokens: InMemoryTokenStore, journal: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        GatewaySettings(journal_dir=journal, store_url=None),
        config=config,
        events=events,
        tokens=tokens,
        catalog=InMemoryCatalog(),
    )
    async with serve(app) as client:
        yield client


async def test_both_variants_score_the_online_vector_and_log_one_hash(
    feast_repo: tuple[Path, pd.DataFrame],
    events: MemoryEvents,
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    tmp_path: Path,
) -> None:
    repo, frame = feast_repo
    feast = {"repo": str(repo), "features": REFS, "entity_key": "user_id"}
    defaults = {**feast, "defaults": {"txn_count_7d": 0, "avg_amount_7d": 0.0}}
    config = GatewayConfig(
        experiments=[_spec("fraud"), _spec("fraud-defaults")],
        shadow={"fraud": ["challenger"]},
        features={
            "fraud": FeatureSourceEntry(feast=feast),
            "fraud-defaults": FeatureSourceEntry(feast=defaults),
        },
    )
    headers = auth(tokens[Role.SERVICE])
    async with _gateway(config, events, token_store, tmp_path / "journal") as client:
        seen = 0
        for body, user in [
            ({"experiment": "fraud", "unit_id": "17"}, 17),
            ({"experiment": "fraud", "attributes": {"user_id": 3}}, 3),
            ({"experiment": "fraud", "unit_id": "42"}, 42),
        ]:
            response = await client.post("/v1/predict", json=body, headers=headers)
            assert response.status_code == 200, response.text
            vector = _latest(frame, user)
            assert response.json()["prediction"] == pytest.approx(
                float(np.dot(champion.weights, vector))
            )
            seen += 2
            served, shadow = (await logged_predictions(events, seen))[-2:]
            assert (served["is_shadow"], shadow["is_shadow"]) == (False, True)
            assert served["request_id"] == shadow["request_id"]
            assert shadow["score"] == pytest.approx(float(np.dot(challenger.weights, vector)))
            expected = feature_vector_hash(POSITIONS, [float(v) for v in vector])
            assert served["features_hash"] == shadow["features_hash"] == expected

        for body, status, detail in [
            (
                {"experiment": "fraud", "unit_id": "9999"},
                422,
                "feature 'txn_count_7d' has no value in Feast for user_id=9999 and no default",
            ),
            ({"experiment": "fraud", "unit_id": "abc"}, 422, "user_id='abc' is not an integer"),
            (
                {"experiment": "fraud", "unit_id": "17", "features": [1.0, 2.0]},
                422,
                "reads its features from a feature store by 'user_id'; send no features",
            ),
        ]:
            refused = await client.post("/v1/predict", json=body, headers=headers)
            assert refused.status_code == status, refused.text
            assert detail in refused.json()["detail"]
        assert len(events.rows["prediction"]) == seen  # nothing refused was logged

        filled = await client.post(
            "/v1/predict", json={"experiment": "fraud-defaults", "unit_id": "9999"}, headers=headers
        )
        assert filled.status_code == 200, filled.text
        assert filled.json()["prediction"] == 0.0
        [row] = (await logged_predictions(events, seen + 1))[-1:]
        assert row["features_hash"] == feature_vector_hash(POSITIONS, [0.0, 0.0])


def test_config_file_resolves_the_repo_against_its_folder(
    feast_repo: tuple[Path, pd.DataFrame],
) -> None:
    repo, _ = feast_repo
    entry = {"feast": {"repo": repo.name, "features": REFS, "entity_key": "user_id"}}
    spec = _spec("fraud").model_dump(mode="json")
    path = repo.parent / "gateway.json"
    path.write_text(orjson.dumps({"experiments": [spec], "features": {"fraud": entry}}).decode())
    config = load_config(path)
    assert config.features["fraud"].feast is not None
    assert Path(config.features["fraud"].feast["repo"]) == repo
    assert config.features["fraud"].timeout_ms == 1000.0

    path.write_text(orjson.dumps({"experiments": [spec], "features": {"fruad": entry}}).decode())
    with pytest.raises(ConfigError, match=r"features\.fruad: no such experiment"):
        load_config(path)
    bad = {"fraud": {**entry, "timeout_ms": 0}}
    path.write_text(orjson.dumps({"experiments": [spec], "features": bad}).decode())
    with pytest.raises(ConfigError, match=r"features\.fraud\.timeout_ms"):
        load_config(path)


async def test_the_documented_example_config_serves_from_the_example_repo(
    feast_repo: tuple[Path, pd.DataFrame],
    events: MemoryEvents,
    token_store: InMemoryTokenStore,
    tokens: dict[Role, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """examples/feast/gateway.yaml as docs/gateway.md runs it (its models on the path)."""
    repo, frame = feast_repo
    monkeypatch.syspath_prepend(str(repo))
    config = load_config(repo / "gateway.yaml")
    async with _gateway(config, events, token_store, tmp_path / "journal") as client:
        response = await client.post(
            "/v1/predict",
            json={"experiment": "fraud-feast", "unit_id": "17"},
            headers=auth(tokens[Role.SERVICE]),
        )
        assert response.status_code == 200, response.text
        served, shadow = await logged_predictions(events, 2)
    vector = _latest(frame, 17)
    assert response.json()["prediction"] == pytest.approx(
        float(expit(0.05 * vector[0] + 0.01 * vector[1] - 2.0))
    )
    assert shadow["score"] == pytest.approx(
        float(expit(0.08 * vector[0] + 0.008 * vector[1] - 2.2))
    )
    expected = feature_vector_hash(POSITIONS, [float(v) for v in vector])
    assert served["features_hash"] == shadow["features_hash"] == expected
