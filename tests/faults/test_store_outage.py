"""A 10 s store outage under load costs no prediction and no event: refused and black-holed.

A real ``abflow serve`` (authentication on, one worker, events shipped from a child
process) talks to a real PostgreSQL through :class:`tcp_proxy.TcpProxy`. Client threads
predict (and post outcomes) with a service token stored in the store, while a monitor reads
``/readyz`` and ``/metrics`` with a viewer token. After a few seconds the proxy refuses every
connection, or black-holes them (accepts, reads, never answers), for 10 s, then forwards
again. Tokens are re-verified every second (``TOKEN_CACHE_SECONDS=1``), so the gateway does
ask the store during the outage. Afterwards every acknowledged event must be in the store
exactly once (read directly, not through the proxy).

Before the fix, a black-holed store hung predictions, ``/readyz`` and ``/metrics`` for the
whole outage, and a refusing one failed requests with 503 "cannot look up a token".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from gateway_process import (
    GatewayProcess,
    descendants,
    free_port,
    gateway_env,
    kill_tree,
    stop_gateway,
    wait_ready,
    write_config,
)
from store_counts import duplicated, missing, read_store
from tcp_proxy import Mode, TcpProxy

from abflow.security.roles import Role
from abflow.security.tokens import create_token
from abflow.serving.demo_models import N_FEATURES
from abflow.serving.wiring import StoreTokenStore
from abflow.store import EventStore, upgrade_store
from abflow.store.engine import StoreTimeouts, translating

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CLIENTS = 4
BEFORE_SECONDS = 2.0
OUTAGE_SECONDS = 10.0
AFTER_SECONDS = 2.0
OUTCOME_EVERY = 5
BACKLOG_TIMEOUT_SECONDS = 40.0
GATEWAY_ENV = {
    "ABFLOW_TOKEN_CACHE_SECONDS": "1",  # re-verified every second: the store is asked
    "ABFLOW_TOKEN_LOOKUP_TIMEOUT_SECONDS": "1",
    "ABFLOW_STORE_TIMEOUT_SECONDS": "3",
    "ABFLOW_REFRESH_SECONDS": "1",  # the follower polls the store through the outage too
    "ABFLOW_SHIP_IN_SUBPROCESS": "true",
}


@dataclass
class Tally:
    """What the clients sent and what the gateway answered."""

    sent: int = 0
    failed: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)  # request ids answered 200
    outcomes: list[str] = field(default_factory=list)  # event ids answered 202
    answered_in_outage: int = 0
    outage: tuple[float, float] = (float("inf"), float("inf"))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def in_outage(self, when: float) -> bool:
        return self.outage[0] <= when <= self.outage[1]


def send_until_stopped(
    base_url: str, token: str, client_id: int, tally: Tally, stop: threading.Event
) -> None:
    headers = {"authorization": f"Bearer {token}"}
    features = [0.1 * (client_id + 1)] * N_FEATURES
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for i in range(1_000_000):
            if stop.is_set():
                return
            request_id = f"c{client_id}-{i}"
            body = {"unit_id": f"unit-{request_id}", "request_id": request_id}
            with tally.lock:
                tally.sent += 1
            try:
                response = client.post("/v1/predict", json={**body, "features": features})
            except httpx.TransportError as exc:
                with tally.lock:
                    tally.failed.append(f"predict: {exc!r}")
                continue
            with tally.lock:
                if response.status_code != 200:
                    tally.failed.append(f"predict {response.status_code}: {response.text}")
                    continue
                tally.predictions.append(request_id)
                tally.answered_in_outage += tally.in_outage(time.monotonic())
            if i % OUTCOME_EVERY:
                continue
            outcome = {**body, "name": "converted", "value": 1}
            try:
                response = client.post("/v1/outcomes", json={"outcomes": [outcome]})
            except httpx.TransportError as exc:
                with tally.lock:
                    tally.failed.append(f"outcome: {exc!r}")
                continue
            with tally.lock:
                if response.status_code == 202:
                    tally.outcomes.extend(response.json()["event_ids"])
                else:
                    tally.failed.append(f"outcome {response.status_code}: {response.text}")


@dataclass
class Probes:
    """``/readyz`` and ``/metrics`` as seen before and during the outage."""

    ready_statuses: list[int] = field(default_factory=list)
    degraded_seen: int = 0
    metrics_statuses: list[int] = field(default_factory=list)
    slowest_seconds: float = 0.0


def probe_until_stopped(base_url: str, token: str, probes: Probes, stop: threading.Event) -> None:
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while not stop.wait(0.25):
            started = time.monotonic()
            try:
                ready = client.get("/readyz")
                metrics = client.get("/metrics", headers=headers)
            except httpx.TransportError:  # a hung gateway: counted as a failed probe (status 0)
                probes.ready_statuses.append(0)
                probes.metrics_statuses.append(0)
                continue
            finally:
                probes.slowest_seconds = max(probes.slowest_seconds, time.monotonic() - started)
            probes.ready_statuses.append(ready.status_code)
            probes.degraded_seen += bool(ready.json().get("degraded"))
            probes.metrics_statuses.append(metrics.status_code)


@contextmanager
def authenticated_gateway(workdir: Path, config: Path) -> Iterator[GatewayProcess]:
    """``abflow serve`` with authentication on (gateway_process starts it with --no-auth)."""
    port = free_port()
    log_path = workdir / f"gateway-{port}.log"
    command = [sys.executable, "-m", "abflow.cli.main", "serve", "--config", str(config)]
    command += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=gateway_env(workdir, GATEWAY_ENV),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gateway = GatewayProcess(process, port, log_path)
    try:
        wait_ready(gateway, shippers=1)
        yield gateway
    finally:
        if gateway.process.poll() is None:
            try:
                stop_gateway(gateway)
            except subprocess.TimeoutExpired:
                kill_tree(gateway)
        for pid in descendants(gateway.process.pid):  # orphans of a hung stop
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_a_ten_second_store_outage_costs_no_prediction_and_no_event(
    tmp_path: Path, pg_url: str, mode: Mode, fault_figure: Callable[..., None]
) -> None:
    upgrade_store(pg_url)
    with EventStore.open(pg_url) as store:
        service, _ = create_token(StoreTokenStore(store), "checkout", Role.SERVICE)
        viewer, _ = create_token(StoreTokenStore(store), "scraper", Role.VIEWER)
    direct = sa.make_url(pg_url)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    try:
        proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
        config = write_config(
            tmp_path / "gateway.yaml",
            {
                "store_url": proxied,
                "experiments": [
                    {
                        "key": "outage",
                        "unit": "user_id",
                        "variants": [
                            {
                                "name": "control",
                                "model": "python:abflow.serving.demo_models:champion",
                            },
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
        with authenticated_gateway(tmp_path, config) as gateway:
            tally, probes = run_outage(gateway, proxy, mode, service, viewer)
            deadline = time.monotonic() + BACKLOG_TIMEOUT_SECONDS
            while (
                missing(tally.predictions, tally.outcomes, read_store(pg_url))
                and time.monotonic() < deadline
            ):
                assert gateway.process.poll() is None, gateway.log
                time.sleep(0.5)
            stored = read_store(pg_url)  # while the gateway still runs: shipped, not drained
            log = gateway.log
    finally:
        proxy.close()

    lost = missing(tally.predictions, tally.outcomes, stored)
    doubled = duplicated(stored)
    fault_figure(
        f"store {'refusing connections' if mode == 'refuse' else 'black-holed'} "
        f"{OUTAGE_SECONDS:g} s under load, PostgreSQL, auth on",
        predictions_sent=tally.sent,
        failed=len(tally.failed),
        answered_during_outage=tally.answered_in_outage,
        events_acknowledged=2 * len(tally.predictions) + len(tally.outcomes),
        events_lost=lost,
        events_duplicated=doubled,
        readyz_200=f"{probes.ready_statuses.count(200)}/{len(probes.ready_statuses)}",
        readyz_degraded=probes.degraded_seen,
        metrics_200=f"{probes.metrics_statuses.count(200)}/{len(probes.metrics_statuses)}",
        slowest_probe_s=round(probes.slowest_seconds, 2),
        follower_polls_failed=log.count("could not refresh experiments"),
    )
    assert tally.failed == [], f"{tally.failed[:5]}\n{log}"
    assert tally.answered_in_outage >= 50  # answered while the store was out, not after it
    assert len(tally.outcomes) >= 10
    assert lost == 0
    assert doubled == 0
    assert set(probes.ready_statuses) == {200}
    assert set(probes.metrics_statuses) == {200}
    assert probes.degraded_seen >= 1  # /readyz said the store was out
    # The rollout follower's polls failed within the outage instead of hanging in it (in a
    # black hole one poll takes up to the ping's 5 s and then the connect timeout's 5 s).
    assert log.count("could not refresh experiments") >= 1


def run_outage(
    gateway: GatewayProcess, proxy: TcpProxy, mode: Mode, service: str, viewer: str
) -> tuple[Tally, Probes]:
    """Load before, during and after a OUTAGE_SECONDS outage of kind ``mode``."""
    tally, probes = Tally(), Probes()
    stop, stop_probes = threading.Event(), threading.Event()
    threads = [
        threading.Thread(
            target=send_until_stopped, args=(gateway.base_url, service, k, tally, stop)
        )
        for k in range(CLIENTS)
    ]
    prober = threading.Thread(
        target=probe_until_stopped, args=(gateway.base_url, viewer, probes, stop_probes)
    )
    for thread in [*threads, prober]:  # the scraper's token is verified before the outage
        thread.start()
    try:
        time.sleep(BEFORE_SECONDS)
        started = time.monotonic()
        with tally.lock:
            tally.outage = (started, started + OUTAGE_SECONDS)
        proxy.set_mode(mode)
        time.sleep(OUTAGE_SECONDS)
        stop_probes.set()
        prober.join(timeout=90)
        proxy.set_mode("forward")
        time.sleep(AFTER_SECONDS)
    finally:
        proxy.set_mode("forward")
        stop.set()
        stop_probes.set()
        for thread in threads:
            thread.join(timeout=90)
    return tally, probes


def test_a_black_holed_store_call_ends_as_unavailable_instead_of_hanging(
    pg_url: str, fault_figure: Callable[..., None]
) -> None:
    """Each way a call can meet a silent server ends in StoreUnavailableError, bounded by the
    engine's timeouts (here 1 s): a pooled connection's ping and then a new connection, a
    statement whose answer never comes, and an event write (COPY, out of SQLAlchemy's sight)
    cut off in the middle."""
    upgrade_store(pg_url)
    direct = sa.make_url(pg_url)
    timeouts = StoreTimeouts(connect_seconds=1.0, statement_seconds=1.0)
    row = {
        "event_id": "0" * 32,
        "ts": 1.0,
        "request_id": "r1",
        "experiment_key": "e",
        "phase": 1,
        "unit_id": "u1",
        "variant": "a",
        "model_version": "1",
        "latency_ms": 1.0,
    }

    def in_flight_statement(store: EventStore, proxy: TcpProxy) -> None:
        with store.engine.connect() as connection, translating("sleep"):
            threading.Timer(0.2, proxy.set_mode, args=("blackhole",)).start()
            connection.execute(sa.text("SELECT pg_sleep(0.5)"))  # its answer is swallowed

    def in_flight_copy(store: EventStore, proxy: TcpProxy) -> None:
        rows = [{**row, "event_id": f"{i:032x}", "request_id": f"r{i}"} for i in range(20_000)]
        threading.Timer(0.1, proxy.set_mode, args=("blackhole",)).start()
        store.write_events("prediction", rows)  # COPY, on the driver's connection

    calls: dict[str, Callable[[EventStore, TcpProxy], object]] = {
        "ping_then_connect_s": lambda store, _: store.find_token_by_hash("0" * 64),
        "statement_in_flight_s": in_flight_statement,
        "copy_in_flight_s": in_flight_copy,
    }
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, call in calls.items():
        with TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
            proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
            with EventStore.open(proxied, timeouts=timeouts) as store:
                store.has_tokens()  # a pooled connection, then silence
                if name == "ping_then_connect_s":
                    proxy.set_mode("blackhole")
                outcome: list[BaseException | None] = []
                started = time.monotonic()
                worker = threading.Thread(target=_run, args=(call, store, proxy, outcome))
                worker.start()
                worker.join(timeout=60)  # bounded: a hang fails the test instead of stalling it
                seconds[name] = round(time.monotonic() - started, 2)
                assert outcome, f"{name}: still waiting after 60 s"
                errors[name] = type(outcome[0]).__name__
                proxy.set_mode("forward")  # resets the silent connections: close() is quick
    fault_figure(
        "one call to a black-holed PostgreSQL (timeouts 1 s)",
        **seconds,
    )
    assert errors == dict.fromkeys(calls, "StoreUnavailableError")
    assert max(seconds.values()) < 30  # about 2-3 s each; far below any hang


def _run(
    call: Callable[[EventStore, TcpProxy], object],
    store: EventStore,
    proxy: TcpProxy,
    outcome: list[BaseException | None],
) -> None:
    try:
        call(store, proxy)
    except Exception as exc:
        outcome.append(exc)
        return
    outcome.append(None)
