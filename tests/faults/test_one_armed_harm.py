"""Fault: a challenger that harms only its own arm (complaints where the control has none).

A real gateway on a real SQLite store serves the experiment after the controller opened its
first step (50 %); clients post a complaint for 30 % of the challenger's predictions and for
none of the control's. The guardrail's relative effect is undefined (the control rate is 0),
so a controller reading only it would hold, or crash writing undefined evidence; the tick
must roll the challenger back, write a valid JSON audit entry, and the running gateway must
then send every unit to the control.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from abflow.rollout.controller import tick
from abflow.serving.app import create_app
from abflow.serving.demo_models import N_FEATURES
from abflow.serving.settings import GatewayConfig, GatewaySettings
from abflow.spec import parse_experiment
from abflow.store import EventStore

KEY = "harm-one-arm"
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
        {"name": "challenger", "model": "python:abflow.serving.demo_models:challenger"},
    ],
    "metrics": [
        {
            "name": "complaints",
            "kind": "conversion",
            "event": "complaint",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.10,
        }
    ],
    "rollout": {
        "steps": [
            {"traffic": 0.5, "min_duration_hours": 1, "min_samples": 100},
            {"traffic": 0.75, "min_duration_hours": 1, "min_samples": 100},
        ],
    },
}
UNITS = 600
COMPLAINT_EVERY = 10  # 3 of every 10 challenger units complain: 30 %
STORE_WAIT_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = parse_experiment(SPEC)
    with EventStore.open(url) as store:
        store.register_experiment(spec)
        assert tick(store, KEY).action == "started"
    settings = GatewaySettings(
        store_url=url, journal_dir=tmp_path / "journal", auth_enabled=False, refresh_seconds=0.2
    )
    app = create_app(settings, config=GatewayConfig(experiments=[spec]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline, "the gateway did not start in 60 s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", url
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def predict(client: httpx.Client, unit: str) -> str:
    response = client.post(
        "/v1/predict",
        json={"experiment": KEY, "unit_id": unit, "features": [0.3] * N_FEATURES},
    )
    assert response.status_code == 200, response.text
    variant: str = response.json()["variant"]
    return variant


def test_harm_in_one_arm_is_rolled_back(gateway: tuple[str, str], fault_figure: Any) -> None:
    base, url = gateway
    served: dict[str, list[str]] = {"control": [], "challenger": []}
    complained = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(UNITS):
            unit = f"user-{i}"
            variant = predict(client, unit)
            served[variant].append(unit)
            if variant == "challenger" and len(served["challenger"]) % COMPLAINT_EVERY < 3:
                outcome = {"name": "complaint", "unit_id": unit, "experiment": KEY}
                response = client.post("/v1/outcomes", json={"outcomes": [outcome]})
                assert response.status_code == 202, response.text
                complained.append(unit)

    with EventStore.open(url) as store:
        deadline = time.monotonic() + STORE_WAIT_SECONDS
        while store.count_events("exposure", KEY) < UNITS or store.count_events(
            "outcome", KEY
        ) < len(complained):
            assert time.monotonic() < deadline, "the gateway's events never reached the store"
            time.sleep(0.2)
        result = tick(store, KEY, now=time.time() + 2 * 3600)
        entry = [e for e in store.audit_entries(KEY) if e.action.startswith("rollout.")][-1]
        payload = json.loads(json.dumps(entry.payload, allow_nan=False))
        chain_problems = store.verify_audit()

    [guardrail] = result.evidence["guardrails"]
    rates = {
        name: guardrail["values"][name] for name in ("control", "challenger")
    }  # complaint rate per arm, as the controller measured it
    with httpx.Client(base_url=base, timeout=30) as client:
        deadline = time.monotonic() + 30
        while True:
            live = client.get(f"/v1/experiments/{KEY}").json()
            if [v["weight"] for v in live["variants"]] == [1.0, 0.0]:
                break
            assert time.monotonic() < deadline, "the gateway never picked up the rollback"
            time.sleep(0.1)
        after = [predict(client, f"user-{i}") for i in range(0, UNITS, 5)]

    fault_figure(
        "challenger complains in its own arm only, real gateway + SQLite",
        units_control=len(served["control"]),
        units_challenger=len(served["challenger"]),
        complaint_rate_control=f"{rates['control']:.3f}",
        complaint_rate_challenger=f"{rates['challenger']:.3f}",
        action=result.action,
        basis=guardrail["basis"],
        challenger_after_rollback=after.count("challenger"),
    )
    assert result.action == "rolled_back"
    assert guardrail["status"] == "fail"
    assert rates["control"] == 0.0
    assert 0.25 < rates["challenger"] < 0.35
    assert min(len(units) for units in served.values()) > 200
    assert payload["evidence"]["guardrails"][0]["status"] == "fail"
    assert chain_problems == []
    assert after.count("challenger") == 0
