"""Outcomes by request id alone are accepted by any replica and joined in the store.

Two real gateways (``abflow serve`` processes, each with its own event journal) share one
PostgreSQL store. Predictions go through gateway 1; their outcomes, carrying only the
request id, go through gateway 2 (which never answered them) and through gateway 1 after it
was killed and restarted (its memo of recent requests is gone). Gateway 1 is killed with
SIGKILL right after answering, so some predictions may reach the store only when it
restarts and replays its journal, after their outcomes. ``abflow.analysis.analyze`` must
count every outcome. A second test checks the store-side join itself, on SQLite and
PostgreSQL, against numbers worked out by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from model_server import free_port

from abflow.analysis import analyze
from abflow.serving.demo_models import N_FEATURES
from abflow.store import EventStore, upgrade_store
from abflow.store.aggregates import OutcomeColumn, histogram, unit_moments
from abflow.store.schema import UNRESOLVED_UNIT, outcomes

N_REQUESTS = 40


@contextmanager
def gateway(
    tmp_path: Path, name: str, store_url: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``abflow serve`` (demo experiment, no auth) on a free port, in a process group of its
    own (with its event shipper child); its base URL and process."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ABFLOW_")},
        "ABFLOW_STORE_URL": store_url,
        "ABFLOW_JOURNAL_DIR": str(tmp_path / f"journal-{name}"),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "abflow.cli.main", "serve", "--port", str(port)]
    command += ["--no-auth", "--log-level", "warning"]
    log_path = tmp_path / f"gateway-{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the gateway did not become ready within 90 s"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the gateway and its shipper child (its process group), then reap it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def send_outcomes(base: str, request_ids: list[str]) -> None:
    response = httpx.post(
        f"{base}/v1/outcomes",
        json={"outcomes": [{"request_id": rid, "name": "converted"} for rid in request_ids]},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(request_ids)


def wait_for_events(store: EventStore, predictions: int, outcomes: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        counts = (store.count_events("prediction"), store.count_events("outcome"))
        if counts == (predictions, outcomes):
            return
        assert time.monotonic() < deadline, f"stored (predictions, outcomes) {counts}"
        time.sleep(0.2)


@pytest.mark.slow
def test_outcomes_by_request_id_through_other_replicas_are_all_counted(
    tmp_path: Path, pg_url: str
) -> None:
    upgrade_store(pg_url)
    answered: dict[str, str] = {}  # request id -> variant
    with gateway(tmp_path, "two", pg_url) as (second, _):
        with gateway(tmp_path, "one", pg_url) as (first, first_process):
            for i in range(N_REQUESTS):
                response = httpx.post(
                    f"{first}/v1/predict",
                    json={"unit_id": f"user-{i}", "features": [0.1 * (i % 7)] * N_FEATURES},
                    timeout=30,
                )
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["in_experiment"], body
                answered[body["request_id"]] = body["variant"]
            kill(first_process)
        request_ids = list(answered)
        half = N_REQUESTS // 2
        send_outcomes(second, request_ids[:half])  # before gateway 1 has replayed its journal
        with gateway(tmp_path, "one", pg_url) as (restarted, _):
            send_outcomes(restarted, request_ids[half:])
            with EventStore.open(pg_url) as store:
                wait_for_events(store, N_REQUESTS, N_REQUESTS)
                with store.engine.connect() as connection:
                    by_request_only = connection.execute(
                        sa.select(sa.func.count())
                        .select_from(outcomes)
                        .where(outcomes.c.unit_id == UNRESOLVED_UNIT)
                    ).scalar_one()
    # neither process had answered them in its lifetime: every one was joined in the store
    assert by_request_only == N_REQUESTS
    result = analyze(pg_url, "demo")
    [conversion] = [m for m in result.metrics if m.name == "conversion"]
    converted = {v.variant: v.value * v.n for v in conversion.values}
    expected = {name: list(answered.values()).count(name) for name in set(answered.values())}
    assert {k: round(v) for k, v in converted.items()} == expected
    assert sum(round(v) for v in converted.values()) == N_REQUESTS


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def prediction(event_id: str, request_id: str, unit: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "event_id": event_id,
        "ts": 100.0,
        "request_id": request_id,
        "experiment_key": "e",
        "phase": 1,
        "unit_id": unit,
        "variant": "control" if unit == "u1" else "treatment",
        "model_version": "1",
        "latency_ms": 1.0,
        "is_fallback": False,
        "is_shadow": False,
    }
    return row | overrides


def test_outcomes_by_request_id_join_the_unit_of_their_prediction(store_url: str) -> None:
    """Only the analysed experiment's non-shadow prediction gives an outcome its unit; the
    unit's first exposure splits the outcomes into pre and post periods as for any other."""
    with EventStore.open(store_url, upgrade=True) as store:
        store.write_events(
            "exposure",
            [
                {
                    "event_id": f"x{u}",
                    "ts": 100.0,
                    "experiment_key": "e",
                    "phase": 1,
                    "unit_id": f"u{u}",
                    "variant": v,
                    "attributes_json": None,
                }
                for u, v in ((1, "control"), (2, "treatment"))
            ],
        )
        late = [
            ("o1", "r1", 2.0, 200.0),
            ("o2", "r1", 3.0, 210.0),
            ("o3", "r2", 5.0, 50.0),  # before u2's first exposure: the pre period
            ("o4", "r3", 7.0, 200.0),  # r3 was predicted in another experiment
            ("o5", "r9", 11.0, 200.0),  # no prediction has this request id
        ]
        rows = [
            {
                "event_id": e,
                "ts": ts,
                "unit_id": UNRESOLVED_UNIT,
                "name": "buy",
                "value": value,
                "request_id": rid,
                "experiment_key": None,
            }
            for e, rid, value, ts in late
        ]
        rows.append(
            {
                "event_id": "o6",
                "ts": 150.0,
                "unit_id": "u1",
                "name": "buy",
                "value": 1.0,
                "request_id": None,
                "experiment_key": "e",
            }
        )
        store.write_events("outcome", rows)  # before the predictions: order does not matter
        store.write_events(
            "prediction",
            [
                prediction("p1", "r1", "u1"),
                prediction("p1s", "r1", "u1", is_shadow=True, variant="treatment"),
                prediction("p2", "r2", "u2"),
                prediction("p3", "r3", "u3", experiment_key="other"),
            ],
        )
        columns = [
            OutcomeColumn("buy_sum", "buy", "sum"),
            OutcomeColumn("buy_count", "buy", "count"),
            OutcomeColumn("buy_any", "buy", "any"),
            OutcomeColumn("buy_pre", "buy", "sum", period="pre"),
        ]
        moments, mixed = unit_moments(store, "e", 1, columns)
        bins = histogram(store, "e", 1, source="outcome", event="buy", bin_width=1.0)
    assert mixed == 0
    control, treatment = moments[("control", 0)], moments[("treatment", 0)]
    assert (control.n, control.rows) == (1, 4)  # one exposure, three outcomes
    assert {k: control.total(k) for k in ("buy_sum", "buy_count", "buy_any", "buy_pre")} == {
        "buy_sum": 6.0,
        "buy_count": 3.0,
        "buy_any": 1.0,
        "buy_pre": 0.0,
    }
    assert control.product("buy_sum", "buy_sum") == 36.0
    assert {k: treatment.total(k) for k in ("buy_sum", "buy_count", "buy_any", "buy_pre")} == {
        "buy_sum": 0.0,
        "buy_count": 0.0,
        "buy_any": 0.0,
        "buy_pre": 5.0,
    }
    assert bins == {"control": [(1.0, 1), (2.0, 1), (3.0, 1)]}
