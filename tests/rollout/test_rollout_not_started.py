"""Until the first tick the challenger gets nothing, on every way a spec comes in: weights
of a plan step registered again before the rollout has started are refused (the store on
SQLite and PostgreSQL, ``POST /v1/experiments``, a config file at gateway startup), and a
redeploy with the current step's weights still passes once it has."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from abflow.errors import InvalidSpecError
from abflow.rollout.controller import reset, rollback, tick
from abflow.serving.app import create_app
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.spec import ExperimentSpec, parse_experiment
from abflow.store import EventStore
from memory_sink import MemorySink

KEY = "ranker-v5"
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
        {"name": "challenger", "model": "python:abflow.serving.demo_models:challenger"},
    ],
    "rollout": {"steps": [{"traffic": 0.3}, {"traffic": 0.6}]},
}
STEP_1 = [0.7, 0.3]
BEFORE_THE_START = r"weights: weights \[.*\] send traffic .* before the rollout has started"


def spec_with(**changes: Any) -> ExperimentSpec:
    return parse_experiment(copy.deepcopy(SPEC) | changes)


def _refuses_every_share(store: EventStore) -> None:
    version = store.get_experiment(KEY).version
    for weights in (STEP_1, [0.4, 0.6], [0.0, 1.0]):
        with pytest.raises(InvalidSpecError, match=BEFORE_THE_START):
            store.register_experiment(spec_with(weights=weights))
    assert store.get_experiment(KEY).version == version  # nothing stored
    again = store.register_experiment(spec_with(name="file edited"))
    assert again.spec.effective_weights == [1.0, 0.0]


def test_step_weights_registered_again_before_the_start_are_refused(
    ramp_store: EventStore,
) -> None:
    store = ramp_store
    store.register_experiment(spec_with())
    _refuses_every_share(store)
    at_zero = store.register_experiment(spec_with(weights=[1.0, 0.0]))  # 0 % may be written
    assert at_zero.spec.effective_weights == [1.0, 0.0]
    assert not [e for e in store.audit_entries(KEY) if e.action.startswith("rollout.")]

    assert tick(store, KEY).action == "started"
    phase = store.current_phase(KEY).phase
    redeploy = store.register_experiment(spec_with(weights=STEP_1))  # the current step
    assert redeploy.spec.effective_weights == STEP_1
    assert store.current_phase(KEY).phase == phase

    rollback(store, KEY, actor="user:test", reason="alert")
    reset(store, KEY, actor="user:test", reason="fixed challenger")
    _refuses_every_share(store)  # after a reset the plan starts over at 0 %
    assert tick(store, KEY).action == "started"
    assert store.get_experiment(KEY).spec.effective_weights == STEP_1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_gateway_refuses_step_weights_before_the_start(
    ramp_store: EventStore, ramp_store_url: str, tmp_path: Any, anyio_backend: str
) -> None:
    store = ramp_store
    store.register_experiment(spec_with())  # registered earlier, no tick yet
    settings = GatewaySettings(
        store_url=ramp_store_url,
        journal_dir=tmp_path / "journal",
        auth_enabled=False,
        refresh_seconds=0,
    )
    from_config = create_app(
        settings, config=GatewayConfig(experiments=[spec_with(weights=STEP_1)]), events=MemorySink()
    )
    with pytest.raises(InvalidSpecError, match=BEFORE_THE_START):
        async with from_config.router.lifespan_context(from_config):
            pass
    assert store.get_experiment(KEY).spec.effective_weights == [1.0, 0.0]

    app = create_app(settings, config=GatewayConfig(experiments=[spec_with()]), events=MemorySink())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            refused = await client.post("/v1/experiments", json={**SPEC, "weights": STEP_1})
            plain = await client.post("/v1/experiments", json=SPEC)
            assert tick(store, KEY).action == "started"
            redeploy = await client.post("/v1/experiments", json={**SPEC, "weights": STEP_1})
    assert refused.status_code == 422
    assert [p.split(" send ")[0] for p in refused.json()["problems"]] == [
        "weights: weights [0.7, 0.3]"
    ]
    assert plain.status_code == 201
    assert [v["weight"] for v in plain.json()["variants"]] == [1.0, 0.0]
    assert redeploy.status_code == 201, redeploy.text
    assert [v["weight"] for v in redeploy.json()["variants"]] == STEP_1

    restarted = create_app(
        settings, config=GatewayConfig(experiments=[spec_with(weights=STEP_1)]), events=MemorySink()
    )
    async with restarted.router.lifespan_context(restarted):  # a started rollout: accepted
        pass
    assert store.get_experiment(KEY).spec.effective_weights == STEP_1
