"""A running gateway follows a rollout's shadow step: copies start when the controller opens
it and stop when the controller advances past it (the store is the only channel)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from test_rollout_gateway import FEATURES, running

from abflow.rollout.controller import tick
from abflow.serving.app import create_app
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.spec import parse_experiment
from abflow.store import EventStore

KEY = "ranker-shadow"
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
        {"name": "challenger", "model": "python:abflow.serving.demo_models:challenger"},
    ],
    "rollout": {
        "steps": [
            {"shadow": True, "min_duration_hours": 0, "min_samples": 30},
            {"traffic": 0.5, "min_duration_hours": 0, "min_samples": 0},
        ]
    },
}


def live(base: str) -> dict[str, Any]:
    experiments = httpx.get(f"{base}/v1/experiments", timeout=10).json()["experiments"]
    return next(e for e in experiments if e["key"] == KEY)


def mirrored(base: str) -> list[str]:
    return [v["name"] for v in live(base)["variants"] if v["is_shadow"]]


def predict(base: str, units: range) -> set[str | None]:
    return {
        httpx.post(
            f"{base}/v1/predict",
            json={"experiment": KEY, "unit_id": f"u{i}", "features": FEATURES},
            timeout=10,
        ).json()["variant"]
        for i in units
    }


def stored_shadow_predictions(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                sa.text("select count(*) from predictions where is_shadow and variant = :v"),
                {"v": "challenger"},
            ).scalar()
    finally:
        engine.dispose()
    return int(count or 0)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 120  # generous: a loaded machine ships and refreshes late
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
def test_gateway_mirrors_during_the_shadow_step_and_stops_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = parse_experiment(SPEC)
    with EventStore.open(url) as store:
        store.register_experiment(spec)
    settings = GatewaySettings(
        store_url=url, journal_dir=tmp_path / "journal", auth_enabled=False, refresh_seconds=0.2
    )
    app = create_app(settings, config=GatewayConfig(experiments=[spec]))
    with running(app) as base:
        assert mirrored(base) == []  # registered, not started: no copies
        with EventStore.open(url) as store:
            assert tick(store, KEY).action == "started"
        wait_for(lambda: mirrored(base) == ["challenger"], "the gateway never began mirroring")
        assert predict(base, range(40)) == {"control"}  # the shadow serves no one
        wait_for(lambda: stored_shadow_predictions(url) >= 40, "shadow copies never stored")

        with EventStore.open(url) as store:
            advanced = tick(store, KEY)
        assert advanced.action == "advanced", advanced.reasons
        wait_for(lambda: mirrored(base) == [], "the gateway kept mirroring")
        assert [v["weight"] for v in live(base)["variants"]] == [0.5, 0.5]
        assert predict(base, range(100, 160)) == {"control", "challenger"}
