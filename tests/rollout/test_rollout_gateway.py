"""A running gateway follows the rollout: it keeps the controller's weights across a restart
and picks up a move (here a rollback) from the store within its refresh interval."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from abflow.rollout.controller import rollback, tick
from abflow.serving.app import create_app
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.spec import parse_experiment
from abflow.store import EventStore

SPEC: dict[str, Any] = {
    "key": "ranker-v3",
    "variants": [
        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
        {"name": "challenger", "model": "python:abflow.serving.demo_models:challenger"},
    ],
    "rollout": {"steps": [{"traffic": 0.3}, {"traffic": 0.6}]},
}
FEATURES = [0.2, -0.1, 0.4, 1.0, 0.0, -0.7, 0.3, 0.9]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120  # generous: a loaded machine starts slowly
        while not server.started:
            assert time.monotonic() < deadline, "the gateway did not start in 30 s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = parse_experiment(SPEC)
    with EventStore.open(url) as store:
        store.register_experiment(spec)
        assert tick(store, "ranker-v3").action == "started"  # the controller ran before the pod
    settings = GatewaySettings(
        store_url=url, journal_dir=tmp_path / "journal", auth_enabled=False, refresh_seconds=0.2
    )
    app = create_app(settings, config=GatewayConfig(experiments=[spec]))  # no weights
    with running(app) as base:
        yield base, url


def live(base: str) -> dict[str, Any]:
    experiments = httpx.get(f"{base}/v1/experiments", timeout=10).json()["experiments"]
    return next(e for e in experiments if e["key"] == "ranker-v3")


def test_gateway_keeps_the_rollout_weights_and_follows_a_rollback(
    serving: tuple[str, str],
) -> None:
    base, url = serving
    started = live(base)
    assert [v["weight"] for v in started["variants"]] == [
        0.7,
        0.3,
    ]  # the rollout's step 1, not the config's start (0 %)
    with EventStore.open(url) as store:
        assert store.current_phase("ranker-v3").phase == started["phase"] == 2
        versions_before = store.get_experiment("ranker-v3").version
        rollback(store, "ranker-v3", actor="user:oncall", reason="alert")
    deadline = time.monotonic() + 120  # generous: a loaded machine refreshes late
    while [v["weight"] for v in live(base)["variants"]] != [1.0, 0.0]:
        assert time.monotonic() < deadline, "the gateway never picked up the rollback"
        time.sleep(0.1)
    assert live(base)["phase"] == 3
    variants = {
        httpx.post(
            f"{base}/v1/predict",
            json={"experiment": "ranker-v3", "unit_id": f"u{i}", "features": FEATURES},
            timeout=10,
        ).json()["variant"]
        for i in range(60)
    }
    assert variants == {"control"}
    with EventStore.open(url) as store:
        assert store.get_experiment("ranker-v3").version == versions_before + 1  # only the rollback


def test_registering_over_http_follows_the_plan(serving: tuple[str, str]) -> None:
    base, url = serving
    as_written = httpx.post(f"{base}/v1/experiments", json=SPEC, timeout=30)
    assert as_written.status_code == 201, as_written.text
    assert [v["weight"] for v in as_written.json()["variants"]] == [0.7, 0.3]  # step 1 kept
    assert [v["weight"] for v in live(base)["variants"]] == [0.7, 0.3]

    lowered = httpx.post(f"{base}/v1/experiments", json={**SPEC, "weights": [1.0, 0.0]}, timeout=30)
    assert lowered.status_code == 201  # back to 0 % is a rollback, allowed
    off_plan = httpx.post(
        f"{base}/v1/experiments", json={**SPEC, "weights": [0.5, 0.5]}, timeout=30
    )
    assert off_plan.status_code == 422
    assert any(p.startswith("weights: ") for p in off_plan.json()["problems"])

    fresh = {**SPEC, "key": "ranker-v4"}
    refused = httpx.post(
        f"{base}/v1/experiments", json={**fresh, "weights": [0.7, 0.3]}, timeout=30
    )
    assert refused.status_code == 422
    assert "before the rollout has started" in refused.text
    created = httpx.post(f"{base}/v1/experiments", json=fresh, timeout=30)
    assert created.status_code == 201
    assert [v["weight"] for v in created.json()["variants"]] == [1.0, 0.0]
    with EventStore.open(url) as store:
        assert store.get_experiment("ranker-v4").spec.effective_weights == [1.0, 0.0]


def test_a_config_spec_with_a_plan_serves_only_the_control_until_the_first_tick(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = GatewaySettings(
        store_url=url, journal_dir=tmp_path / "journal", auth_enabled=False, refresh_seconds=0
    )
    app = create_app(settings, config=GatewayConfig(experiments=[parse_experiment(SPEC)]))
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        variants = [
            client.post(
                "/v1/predict",
                json={"experiment": "ranker-v3", "unit_id": f"u{i}", "features": FEATURES},
            ).json()["variant"]
            for i in range(200)
        ]
    assert variants.count("challenger") == 0
    with EventStore.open(url) as store:
        assert store.get_experiment("ranker-v3").spec.effective_weights == [1.0, 0.0]
        assert tick(store, "ranker-v3").action == "started"
        assert store.get_experiment("ranker-v3").spec.effective_weights == [0.7, 0.3]
