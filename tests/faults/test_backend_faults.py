"""A failing challenger behind a real gateway: the control answers, every request is logged.

A model server on 127.0.0.1 (uvicorn in a thread of the test) fails on purpose: of its calls,
20 % answer 500 and 10 % answer only after the gateway's backend timeout. A real ``abflow
serve`` sends half its units to that challenger, with fallback to an in-process control.
Several thousand requests from concurrent clients must all be answered (200); the gateway's
fallbacks must match the failures the server injected (a healthy call may still time out on
a busy machine: that is the tolerance); and the store must hold one prediction per request.

A second experiment on the same gateway checks the circuit breaker as docs/gateway.md
describes it: after ``failure_threshold`` consecutive failures the backend is not called
any more (the control answers at once), and after ``reset_seconds`` one trial call closes
the circuit again once the server is healthy. A last, in-memory test cancels that trial call
mid-way: the circuit must not stay open for good.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import sqlalchemy as sa
import uvicorn
from gateway_process import (
    GatewayProcess,
    free_port,
    running_gateway,
    stop_gateway,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from abflow.errors import BackendError, CircuitOpenError
from abflow.serving.backends import CircuitBreaker, GuardedBackend
from abflow.serving.demo_models import N_FEATURES

REQUESTS = 3000
CONCURRENCY = 32
BACKEND_TIMEOUT_MS = 500
DELAY_SECONDS = 2.0  # four times the gateway's backend timeout
ERROR_EVERY = (0, 1)  # call numbers modulo 10 that fail: 20 %
DELAY_EVERY = (2,)  # and that answer too late: 10 %
TIMING_TOLERANCE = 0.02  # healthy challenger calls that may time out on a loaded machine
BREAKER_THRESHOLD = 5
BREAKER_RESET_SECONDS = 10.0  # longer than phase 1 takes on a busy machine

CONTROL = "python:abflow.serving.demo_models:champion"


@dataclass
class FaultyModel:
    """Counts what the model server did: calls, injected errors, injected delays."""

    calls: int = 0
    errors: int = 0
    delays: int = 0
    breaker_calls: list[float] = field(default_factory=list)  # monotonic time of each call
    breaker_probes_refused: int = 0  # a start-up probe from /readyz that landed while down
    is_breaker_down: bool = False


def _is_probe(rows: list[list[float]]) -> bool:
    """The gateway's health probes (a row of zeros, at start and from /readyz): the requests
    of these tests never send one, so the counters count requests only."""
    return all(value == 0 for row in rows for value in row)


def faulty_app(model: FaultyModel) -> Starlette:
    def answer(n_rows: int) -> Response:
        return Response(
            orjson.dumps({"predictions": [0.5] * n_rows}), media_type="application/json"
        )

    async def flaky(request: Request) -> Response:
        rows = orjson.loads(await request.body())["inputs"]
        if _is_probe(rows):
            return answer(len(rows))
        number = model.calls  # counted before any await: even a call its caller gave up on
        model.calls += 1
        if number % 10 in ERROR_EVERY:
            model.errors += 1
            return Response(b'{"error": "injected"}', status_code=500)
        if number % 10 in DELAY_EVERY:
            model.delays += 1
            await asyncio.sleep(DELAY_SECONDS)
        return answer(len(rows))

    async def breaker(request: Request) -> Response:
        rows = orjson.loads(await request.body())["inputs"]
        is_probe = _is_probe(rows)
        if not is_probe:
            model.breaker_calls.append(time.monotonic())
        if model.is_breaker_down:
            model.breaker_probes_refused += is_probe
            return Response(b'{"error": "down"}', status_code=503)
        return answer(len(rows))

    return Starlette(
        routes=[
            Route("/flaky/invocations", flaky, methods=["POST"]),
            Route("/breaker/invocations", breaker, methods=["POST"]),
        ]
    )


@pytest.fixture
def model_server() -> Iterator[tuple[str, FaultyModel]]:
    """The faulty model server on a free loopback port; always stopped afterwards."""
    model = FaultyModel()
    port = free_port()
    config = uvicorn.Config(
        faulty_app(model),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "the model server stopped"
            assert time.monotonic() < deadline, "the model server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", model
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def experiment(key: str, challenger: str) -> dict[str, object]:
    return {
        "key": key,
        "unit": "user_id",
        "variants": [
            {"name": "control", "model": CONTROL},
            {"name": "challenger", "model": challenger},
        ],
        "weights": [0.5, 0.5],
    }


@pytest.fixture
def gateway(tmp_path: Path, model_server: tuple[str, FaultyModel]) -> Iterator[GatewayProcess]:
    base, _ = model_server
    flaky, breaker = f"{base}/flaky/invocations", f"{base}/breaker/invocations"
    config = write_config(
        tmp_path / "gateway.yaml",
        {
            "store_url": f"sqlite:///{tmp_path / 'events.db'}",
            "experiments": [experiment("flaky", flaky), experiment("breaker", breaker)],
            # One call per request (batch: false): the server injects its faults per call, so
            # each injected fault is one request's. Batched calls are tested with
            # tests/serving/test_remote_batching*.py.
            "backends": {
                # never opens: every failure is one the server injected, and so is each fallback
                flaky: {"version": "flaky-1", "failure_threshold": 1_000_000, "batch": False},
                breaker: {
                    "version": "breaker-1",
                    "batch": False,
                    "failure_threshold": BREAKER_THRESHOLD,
                    "reset_seconds": BREAKER_RESET_SECONDS,
                },
            },
        },
    )
    env = {
        "ABFLOW_BACKEND_TIMEOUT_MS": str(BACKEND_TIMEOUT_MS),
        "ABFLOW_CACHE_ENABLED": "false",  # every request calls its model
        "ABFLOW_METRICS_PUBLIC": "true",
        "ABFLOW_REFRESH_SECONDS": "0",
    }
    with running_gateway(tmp_path, config, env=env) as process:
        yield process


@dataclass
class Answers:
    statuses: dict[int, int]
    by_variant: dict[str, int]
    fallbacks: int


async def send_all(base_url: str, experiment_key: str, n: int) -> Answers:
    """``n`` predictions (distinct units and features) from CONCURRENCY concurrent tasks."""
    statuses: dict[int, int] = {}
    by_variant: dict[str, int] = {}
    fallbacks = 0
    numbers = iter(range(n))
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal fallbacks
            for i in numbers:
                try:
                    response = await client.post(
                        "/v1/predict",
                        json={
                            "experiment": experiment_key,
                            "unit_id": f"{experiment_key}-{i}",
                            "request_id": f"{experiment_key}-{i}",
                            "features": [i / n] + [0.5] * (N_FEATURES - 1),
                        },
                    )
                except httpx.TransportError:
                    statuses[0] = statuses.get(0, 0) + 1
                    continue
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    body = response.json()
                    by_variant[body["variant"]] = by_variant.get(body["variant"], 0) + 1
                    fallbacks += bool(body["is_fallback"])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return Answers(statuses, by_variant, fallbacks)


def metric(base_url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def stored_predictions(tmp_path: Path, experiment_key: str) -> tuple[int, int]:
    """(predictions, fallbacks) in the store for one experiment."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        with engine.connect() as connection:
            rows, fallbacks = connection.execute(
                sa.text(
                    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN is_fallback THEN 1 ELSE 0 END), 0)"
                    " FROM predictions WHERE experiment_key = :key"
                ),
                {"key": experiment_key},
            ).one()
    finally:
        engine.dispose()
    return int(rows), int(fallbacks)


@pytest.mark.slow
def test_a_failing_challenger_costs_no_request_and_every_fallback_is_counted(
    tmp_path: Path,
    model_server: tuple[str, FaultyModel],
    gateway: GatewayProcess,
    fault_figure: Callable[..., None],
) -> None:
    _, model = model_server
    answers = asyncio.run(send_all(gateway.base_url, "flaky", REQUESTS))
    counted = metric(
        gateway.base_url, "abflow_fallbacks_total", experiment="flaky", variant="challenger"
    )
    injected = model.errors + model.delays
    challenger = answers.by_variant.get("challenger", 0)
    stop_gateway(gateway)  # a clean stop ships every event
    logged, logged_fallbacks = stored_predictions(tmp_path, "flaky")
    failures = REQUESTS - answers.statuses.get(200, 0)
    fault_figure(
        "challenger failing 20 % and timing out 10 % of calls, fallback to control",
        requests=REQUESTS,
        client_failures=failures,
        challenger_units=challenger,
        challenger_calls=model.calls,
        injected_errors=model.errors,
        injected_timeouts=model.delays,
        fallbacks=answers.fallbacks,
        fallbacks_metric=int(counted),
        predictions_logged=logged,
        fallbacks_logged=logged_fallbacks,
    )
    assert failures == 0, answers.statuses
    # Every challenger unit called the server (the circuit never opened), except calls the
    # gateway gave up on before the server saw them: those fell back without being injected.
    unseen = challenger - model.calls
    assert 0 <= unseen <= answers.fallbacks - injected
    assert model.errors == pytest.approx(0.2 * model.calls, abs=1)
    assert model.delays == pytest.approx(0.1 * model.calls, abs=1)
    assert injected <= answers.fallbacks <= injected + TIMING_TOLERANCE * challenger
    assert counted == answers.fallbacks
    assert logged == REQUESTS
    assert logged_fallbacks == answers.fallbacks


@pytest.mark.slow
def test_the_circuit_opens_after_the_threshold_and_one_trial_closes_it(
    model_server: tuple[str, FaultyModel],
    gateway: GatewayProcess,
    fault_figure: Callable[..., None],
) -> None:
    base, model = model_server
    reference = f"{base}/breaker/invocations"
    units = iter(range(100_000))

    def challenger_answer(client: httpx.Client) -> dict[str, object]:
        """The next answer for a unit routed to the challenger (about every second unit)."""
        for _ in range(200):
            i = next(units)
            response = client.post(
                "/v1/predict",
                json={
                    "experiment": "breaker",
                    "unit_id": f"breaker-{i}",
                    "features": [i / 1000] + [0.5] * (N_FEATURES - 1),
                },
            )
            assert response.status_code == 200, response.text
            body: dict[str, object] = response.json()
            if body["variant"] == "challenger":
                return body
        msg = "no unit was routed to the challenger"
        raise AssertionError(msg)

    model.is_breaker_down = True
    with httpx.Client(base_url=gateway.base_url, timeout=60) as client:
        down = [challenger_answer(client) for _ in range(3 * BREAKER_THRESHOLD)]
        calls_while_down = len(model.breaker_calls)
        gauge_open = metric(gateway.base_url, "abflow_circuit_open", model=reference)
        model.is_breaker_down = False
        # open: the control answers at once, without calling the backend, until the rest is over
        deadline = time.monotonic() + BREAKER_RESET_SECONDS + 120
        answers_while_open = 0
        while challenger_answer(client)["is_fallback"]:
            answers_while_open += 1
            assert time.monotonic() < deadline, "the circuit never closed"
            time.sleep(0.25)
        calls_to_close = len(model.breaker_calls) - calls_while_down
        rest = model.breaker_calls[calls_while_down] - model.breaker_calls[calls_while_down - 1]
        after = [challenger_answer(client) for _ in range(10)]
        gauge_closed = metric(gateway.base_url, "abflow_circuit_open", model=reference)
    fault_figure(
        f"circuit breaker, threshold {BREAKER_THRESHOLD}, rest {BREAKER_RESET_SECONDS:g} s",
        fallbacks_while_down=sum(bool(a["is_fallback"]) for a in down),
        backend_calls_while_down=calls_while_down,
        answers_while_open=answers_while_open,
        calls_to_close=calls_to_close,
        seconds_open=round(rest, 2),
        fallbacks_after_close=sum(bool(a["is_fallback"]) for a in after),
    )
    assert all(a["is_fallback"] for a in down)  # the control answered every challenger unit
    # Then the backend was left alone. A probe counts as a failure too: the one the gateway's
    # last start-up /readyz sent may land after the test took the server down.
    assert calls_while_down + model.breaker_probes_refused == BREAKER_THRESHOLD
    assert model.breaker_probes_refused <= 1
    assert gauge_open == 1
    assert answers_while_open >= 1
    assert calls_to_close == 1  # one trial call, which succeeded and closed the circuit
    assert rest >= BREAKER_RESET_SECONDS
    assert not any(a["is_fallback"] for a in after)
    assert len(model.breaker_calls) == calls_while_down + 1 + len(after)
    assert gauge_closed == 0


class HangingModel:
    """An in-memory backend whose calls wait until released, or fail while ``is_down``."""

    reference = "memory:hanging"
    version = "hanging-1"
    n_features = None

    def __init__(self) -> None:
        self.is_down = True
        self.release = asyncio.Event()
        self.calls = 0

    async def predict(self, rows: np.ndarray) -> list[Any]:
        self.calls += 1
        if self.is_down:
            msg = "down"
            raise RuntimeError(msg)
        await self.release.wait()
        return [0.5] * rows.shape[0]

    async def aclose(self) -> None:
        """Nothing to release."""


def test_a_cancelled_trial_call_does_not_keep_the_circuit_open_for_good(
    fault_figure: Callable[..., None],
) -> None:
    # A half-open circuit lets one trial through. If that call is cancelled (the gateway
    # shutting down, a caller's task cancelled), it has no result: the next call must be
    # the trial, or the backend is never called again and its units fall back forever.
    now = [0.0]
    model = HangingModel()
    breaker = CircuitBreaker(failure_threshold=1, reset_seconds=10.0, clock=lambda: now[0])
    guarded = GuardedBackend(model, timeout_seconds=60.0, breaker=breaker)
    rows = np.zeros((1, 2))

    async def scenario() -> tuple[int, str, int]:
        with pytest.raises(BackendError):
            await guarded.predict(rows)  # opens the circuit
        now[0] = 10.0  # the rest is over: half-open
        model.is_down = False
        trial = asyncio.create_task(guarded.predict(rows))
        while model.calls < 2:  # the trial reached the model and waits there
            await asyncio.sleep(0)
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        model.release.set()
        refused = 0
        for _ in range(3):
            try:
                await guarded.predict(rows)
            except CircuitOpenError:
                refused += 1
        return refused, breaker.state, model.calls

    refused, state, calls = asyncio.run(scenario())
    fault_figure(
        "half-open trial call cancelled",
        calls_refused_after=refused,
        state_after=state,
        model_calls=calls,
    )
    assert refused == 0
    assert state == "closed"
    assert calls == 5  # the failure, the cancelled trial, then three served calls
