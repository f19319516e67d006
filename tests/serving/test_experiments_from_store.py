"""An experiment registered through one worker is served by every worker on the store, and
by the same gateway after a restart: ``POST /v1/experiments`` reaches one process of many,
and used to be served by that process alone, until it stopped."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import gwmodels
import httpx
import pytest
from gateway_support import experiment, serve

from abflow.serving import GatewaySettings, create_app
from abflow.serving.settings import GatewayConfig
from abflow.spec import parse_experiment
from abflow.store import EventStore

pytestmark = pytest.mark.anyio

ROW = [0.1] * gwmodels.N_FEATURES
NEW = {
    "key": "registered-later",
    "unit": "user_id",
    "variants": [
        {"name": "control", "model": "python:gwmodels:control"},
        {"name": "treatment", "model": "python:gwmodels:challenger"},
    ],
    "weights": [0.5, 0.5],
}


def _app(tmp_path: Path, name: str, refresh_seconds: float) -> object:
    """A gateway on the shared store whose config serves ``exp`` (so its policy lets the
    API name the two test models)."""
    settings = GatewaySettings(
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        journal_dir=tmp_path / f"journal-{name}",
        auth_enabled=False,
        refresh_seconds=refresh_seconds,
    )
    return create_app(settings, config=GatewayConfig(experiments=[experiment()]))


async def _predict(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(
        "/v1/predict", json={"experiment": key, "unit_id": "user-1", "features": ROW}
    )


async def test_a_spec_registered_on_one_worker_is_served_by_the_others_and_after_a_restart(
    tmp_path: Path,
) -> None:
    async with (
        serve(_app(tmp_path, "a", refresh_seconds=0.1)) as first,  # type: ignore[arg-type]
        serve(_app(tmp_path, "b", refresh_seconds=0.1)) as second,  # type: ignore[arg-type]
    ):
        assert (await _predict(second, NEW["key"])).status_code == 404  # the control
        created = await first.post("/v1/experiments", json=NEW)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 60
        while (answer := await _predict(second, NEW["key"])).status_code == 404:
            assert time.monotonic() < deadline, "the other worker never served the new spec"
            await asyncio.sleep(0.05)
        assert answer.status_code == 200, answer.text
        assert answer.json()["experiment"] == NEW["key"]
        listed = (await second.get("/v1/experiments")).json()["experiments"]
        assert {e["key"] for e in listed} == {"exp", NEW["key"]}
        assert next(e for e in listed if e["key"] == NEW["key"])["version"] == 1

    # A restart with no refresh at all still serves it from the start.
    async with serve(_app(tmp_path, "a", refresh_seconds=0)) as restarted:  # type: ignore[arg-type]
        answer = await _predict(restarted, NEW["key"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["variant"] in ("control", "treatment")


async def test_a_stored_spec_the_gateway_may_not_load_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spec in the store passes the API's model policy before it is served: a model the
    config does not name is neither imported nor served, and the refusal is logged once,
    not at every poll."""
    foreign = {**NEW, "key": "foreign"}
    foreign["variants"] = [
        {"name": "control", "model": "python:gwmodels:control"},
        {"name": "treatment", "model": "python:abflow_never_imported:model"},
    ]
    with EventStore.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.register_experiment(parse_experiment(foreign))
    caplog.set_level(logging.WARNING, logger="abflow.gateway")
    async with serve(_app(tmp_path, "a", refresh_seconds=0.05)) as client:  # type: ignore[arg-type]
        await asyncio.sleep(0.5)  # about ten polls
        assert (await _predict(client, "foreign")).status_code == 404
        assert (await _predict(client, "exp")).status_code == 200
    refusals = [r for r in caplog.records if "experiment foreign: cannot serve" in r.message]
    assert len(refusals) == 1, [r.message for r in refusals]
    assert "abflow_never_imported" not in sys.modules
