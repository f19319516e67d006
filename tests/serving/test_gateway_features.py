"""The gateway gives every variant of a request the same feature vector and logs its hash.

Without a feature source the request's row is scored as sent and hashed under positional
names; with an inline source the request's named features are put in declared order and
typed. Either way the served model, a fallback and the shadow copy score the same row, and
the hash each logs depends on the features alone, never on the model version.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import gwmodels
import httpx
import pytest
from gateway_support import AppFactory, MemoryEvents, auth, experiment, logged_predictions
from numpy.testing import assert_allclose

from abflow.errors import BackendError, BackendTimeoutError
from abflow.features import FeastFeatures, feature_vector_hash
from abflow.security.roles import Role
from abflow.serving.features import FeatureSourceEntry, GatewayFeatures
from abflow.serving.http_errors import status_for
from abflow.store.feature_identity import _row_hashes

pytestmark = pytest.mark.anyio

ROW = [0.3, -0.2, 1.1, 4]
SHADOWED = experiment(
    variants=[
        {"name": "control", "model": "python:gwmodels:control"},
        {"name": "candidate", "model": "python:gwmodels:counting"},
    ],
    weights=[1.0, 0.0],
)
INLINE = [
    {"name": "amount"},
    {"name": "visits", "type": "int", "default": 0},
    {"name": "is_new", "type": "bool", "default": False},
    {"name": "age_days", "type": "float"},
]

Build = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def build(make_client: AppFactory) -> Build:
    """A started gateway on one spec, mirroring its second variant when that one serves no
    traffic, and with ``features`` configured."""

    async def start(
        spec: Any = SHADOWED,
        features: dict[str, FeatureSourceEntry] | None = None,
        **settings: Any,
    ) -> httpx.AsyncClient:
        shadow = {spec.key: [spec.variant_names[1]]} if spec.weights[1] == 0 else {}
        return await make_client(spec, shadow=shadow, features=features, **settings)

    return start


async def test_without_a_source_the_row_hash_is_the_same_for_served_and_shadow(
    build: Build, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    client = await build()
    headers = auth(tokens[Role.SERVICE])
    response = await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": ROW}, headers=headers
    )
    assert response.status_code == 200, response.text
    served, shadow = await logged_predictions(events, 2)
    assert served["model_version"] != shadow["model_version"]
    expected = feature_vector_hash(["0", "1", "2", "3"], [float(x) for x in ROW])
    assert served["features_hash"] == shadow["features_hash"] == expected
    assert shadow["score"] == pytest.approx(sum(ROW))  # the counting model saw the same row

    # Same features, another unit, answered from the cache: the same hash.
    await client.post("/v1/predict", json={"unit_id": "u2", "features": ROW}, headers=headers)
    rows = await logged_predictions(events, 4)
    assert {row["features_hash"] for row in rows} == {expected}

    # A batch logs no hash (one per request, and a batch has several vectors).
    batch = {"unit_id": "u3", "features": [ROW, ROW]}
    assert (await client.post("/v1/predict", json=batch, headers=headers)).status_code == 200
    rows = await logged_predictions(events, 6)
    assert [row["features_hash"] for row in rows[4:]] == [None, None]

    missing = await client.post("/v1/predict", json={"unit_id": "u4"}, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["detail"].startswith("features: missing")


async def test_inline_source_orders_types_and_fills_defaults_for_every_variant(
    build: Build, tokens: dict[Role, str], events: MemoryEvents
) -> None:
    client = await build(features={"exp": FeatureSourceEntry(inline=INLINE)})
    headers = auth(tokens[Role.SERVICE])
    named = {"is_new": True, "age_days": 3.5, "amount": 12}
    response = await client.post(
        "/v1/predict", json={"unit_id": "u1", "features": [named]}, headers=headers
    )
    assert response.status_code == 200, response.text
    row = [12.0, 0.0, 1.0, 3.5]  # declared order, visits from its default, True as 1.0
    assert_allclose(response.json()["prediction"], gwmodels.control().predict_proba([row])[0, 1])
    served, shadow = await logged_predictions(events, 2)
    assert shadow["score"] == pytest.approx(sum(row))
    expected = feature_vector_hash(["0", "1", "2", "3"], row)  # the floats the models score
    assert served["features_hash"] == shadow["features_hash"] == expected
    # An int and a bool among the features: a monitoring sample (the float row) still
    # reproduces the logged hash, as the analysis' identical-features check recomputes it.
    assert expected in _row_hashes(row, ["amount", "visits", "is_new", "age_days"])

    # The same values in declared order hash the same.
    positional = {"unit_id": "u2", "features": [12, 0, True, 3.5]}
    assert (await client.post("/v1/predict", json=positional, headers=headers)).status_code == 200
    rows = await logged_predictions(events, 4)
    assert {r["features_hash"] for r in rows} == {expected}

    for features, detail in [
        ([{"amount": "12", "age_days": 1.0}], "features: feature 'amount' must be a float"),
        ([{"amount": 1.0}], "features: feature 'age_days' is missing and has no default"),
        ([{"amount": 1.0, "age_days": 1.0, "amuont": 2}], "unexpected feature 'amuont'"),
        ([{"amount": 1.0, "age_days": 1.0}, {"amount": 1.0}], r"features[1]: feature 'age_days'"),
    ]:
        refused = await client.post(
            "/v1/predict", json={"unit_id": "u3", "features": features}, headers=headers
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "invalid_features"
        assert detail in refused.json()["detail"]
    assert len(events.rows["prediction"]) == 4  # nothing refused was logged


class _OnlineStore:
    """An online store that answers like Feast's, fails, or hangs until released."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.release = threading.Event()

    def get_online_features(self, **_: Any) -> Any:
        if self.mode == "down":
            msg = "connection refused"
            raise ConnectionError(msg)
        self.release.wait(60)
        msg = "released"
        raise ConnectionError(msg)


async def test_a_failing_or_silent_feature_store_is_a_5xx_naming_it() -> None:
    down, silent = _OnlineStore("down"), _OnlineStore("hang")
    features = GatewayFeatures(
        {
            "down": (FeastFeatures("unused", ["v:f"], entity_key="user_id", store=down), 1.0),
            "silent": (FeastFeatures("unused", ["v:f"], entity_key="user_id", store=silent), 0.05),
        }
    )
    request = {"user_id": "7"}
    with pytest.raises(BackendError) as failed:
        await features.prepare("down", [], request, n_features=None, max_rows=10)
    assert "feature store of 'down': cannot read features" in str(failed.value)
    assert status_for(failed.value) == (502, "model_error")
    try:
        with pytest.raises(BackendTimeoutError, match="'silent': no answer within 50 ms") as slow:
            await features.prepare("silent", [], request, n_features=None, max_rows=10)
        assert status_for(slow.value) == (504, "model_timeout")
    finally:
        silent.release.set()
