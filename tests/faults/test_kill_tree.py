"""SIGKILL of the whole gateway process tree under load: no acknowledged event lost or doubled.

A real ``abflow serve`` with two workers (each with its event shipper child, or shipping from
a thread) answers predictions and outcomes from several client threads for a few seconds;
then every process of the tree (the uvicorn supervisor, the workers, the shippers, the
multiprocessing helper) gets SIGKILL in one ``killpg``. A new gateway on the same journal
directory must ship the backlog: every 2xx prediction (by request id: one prediction, one
exposure) and every 202 outcome (by event id) is in the store exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from gateway_process import (
    GatewayProcess,
    kill_tree,
    running_gateway,
    start_gateway,
    write_config,
)
from store_counts import duplicated, missing, read_store

from abflow.serving.demo_models import N_FEATURES
from abflow.store import upgrade_store

pytestmark = pytest.mark.slow

WORKERS = 2
CLIENTS = 6
LOAD_SECONDS = 3.0
MIN_ANSWERS = 200
OUTCOME_EVERY = 5  # one outcome per five predictions
BACKLOG_TIMEOUT_SECONDS = 120.0


@dataclass
class Acknowledged:
    """What the gateway answered with a 2xx: prediction request ids, outcome event ids."""

    predictions: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_until_stopped(
    base_url: str, client_id: int, acknowledged: Acknowledged, stop: threading.Event
) -> None:
    """Predict (and now and then post an outcome) until stopped or the gateway is gone."""
    features = [0.1 * (client_id + 1)] * N_FEATURES
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(1_000_000):
            if stop.is_set():
                return
            request_id = f"c{client_id}-{i}"
            try:
                response = client.post(
                    "/v1/predict",
                    json={
                        "unit_id": f"unit-{request_id}",
                        "request_id": request_id,
                        "features": features,
                    },
                )
                if response.status_code != 200:
                    continue
                with acknowledged.lock:
                    acknowledged.predictions.append(request_id)
                if i % OUTCOME_EVERY:
                    continue
                response = client.post(
                    "/v1/outcomes",
                    json={
                        "outcomes": [
                            {
                                "unit_id": f"unit-{request_id}",
                                "request_id": request_id,
                                "name": "converted",
                                "value": 1,
                            }
                        ]
                    },
                )
                if response.status_code == 202:
                    with acknowledged.lock:
                        acknowledged.outcomes.extend(response.json()["event_ids"])
            except httpx.TransportError:
                return  # the gateway is gone


def load_then_kill(gateway: GatewayProcess) -> tuple[Acknowledged, list[int]]:
    """Clients for LOAD_SECONDS (and at least MIN_ANSWERS answers), then SIGKILL the tree."""
    acknowledged = Acknowledged()
    stop = threading.Event()
    clients = [
        threading.Thread(target=send_until_stopped, args=(gateway.base_url, k, acknowledged, stop))
        for k in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    killed: list[int] = []
    try:
        started = time.monotonic()
        deadline = started + 120
        while time.monotonic() - started < LOAD_SECONDS or len(acknowledged.predictions) < (
            MIN_ANSWERS
        ):
            assert gateway.process.poll() is None, gateway.log
            assert time.monotonic() < deadline, f"only {len(acknowledged.predictions)} answers"
            time.sleep(0.05)
    finally:
        killed = kill_tree(gateway)  # mid-load: the clients are still sending
        stop.set()
        for client in clients:
            client.join(timeout=60)
    return acknowledged, killed


@pytest.fixture(
    params=[
        pytest.param(("sqlite", True), id="sqlite-shipper-child"),
        pytest.param(("sqlite", False), id="sqlite-shipper-thread"),
        pytest.param(
            ("postgresql", True), id="postgresql-shipper-child", marks=pytest.mark.postgres
        ),
        pytest.param(
            ("postgresql", False), id="postgresql-shipper-thread", marks=pytest.mark.postgres
        ),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, bool]:
    """(store name, store URL, ship in a child process)."""
    name, in_child = request.param
    if name == "sqlite":
        return name, f"sqlite:///{tmp_path / 'events.db'}", in_child
    url = str(request.getfixturevalue("pg_url"))
    upgrade_store(url)  # what `abflow db upgrade` does before a PostgreSQL gateway starts
    return name, url, in_child


def test_sigkill_of_the_process_tree_loses_and_doubles_no_acknowledged_event(
    tmp_path: Path, target: tuple[str, str, bool], fault_figure: Callable[..., None]
) -> None:
    name, url, in_child = target
    config = write_config(
        tmp_path / "gateway.yaml",
        {
            "store_url": url,
            "experiments": [
                {
                    "key": "kill-tree",
                    "unit": "user_id",
                    "variants": [
                        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
                        {
                            "name": "challenger",
                            "model": "python:abflow.serving.demo_models:challenger",
                        },
                    ],
                    "weights": [0.5, 0.5],
                }
            ],
        },
    )
    env = {"ABFLOW_SHIP_IN_SUBPROCESS": "true" if in_child else "false"}
    shippers = WORKERS if in_child else 0
    gateway = start_gateway(tmp_path, config, workers=WORKERS, env=env, shippers=shippers)
    acknowledged, killed = load_then_kill(gateway)
    assert len(killed) >= 1 + WORKERS + shippers  # supervisor, workers, shippers
    assert len(acknowledged.predictions) >= MIN_ANSWERS
    assert acknowledged.outcomes
    at_kill = read_store(url)
    missing_at_kill = missing(acknowledged.predictions, acknowledged.outcomes, at_kill)

    with running_gateway(tmp_path, config, workers=WORKERS, env=env, shippers=shippers) as again:
        deadline = time.monotonic() + BACKLOG_TIMEOUT_SECONDS
        while (
            missing(acknowledged.predictions, acknowledged.outcomes, read_store(url))
            and time.monotonic() < deadline
        ):
            assert again.process.poll() is None, again.log
            time.sleep(0.5)
    stored = read_store(url)  # after a clean stop of the second gateway
    lost = missing(acknowledged.predictions, acknowledged.outcomes, stored)
    # An outcome stored twice under two event ids would show as a request with two outcomes.
    doubled = duplicated(stored) + sum(n - 1 for n in stored.outcomes_by_request.values() if n > 1)
    fault_figure(
        f"SIGKILL of the gateway tree under load, {name}, "
        f"shipper in {'a child process' if in_child else 'a thread'}",
        processes_killed=len(killed),
        acknowledged_predictions=len(acknowledged.predictions),
        acknowledged_outcomes=len(acknowledged.outcomes),
        missing_at_kill=missing_at_kill,
        missing_after_restart=lost,
        duplicated=doubled,
    )
    assert lost == 0
    assert doubled == 0
    assert len(stored.predictions) >= len(acknowledged.predictions)
    assert not list((tmp_path / "journal").rglob("*.journal"))  # the backlog is all shipped
