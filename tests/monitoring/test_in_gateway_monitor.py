"""The live monitor inside the gateway: off by default; on, it fills the history and the
gateway's ``/metrics``; the store lease keeps two processes from running passes at once; a
failing pass is counted and logged once, and the task goes on.

The gauges are checked against skew recomputed here from the raw ``feature_samples`` rows
(read with sqlite3, not through the monitor's own queries).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from numpy.testing import assert_allclose
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from abflow.drift import detect_drift
from abflow.errors import AbflowError, StoreUnavailableError
from abflow.events.sampling import FeatureSampler
from abflow.monitoring.monitor import MonitorOptions
from abflow.monitoring.monitor_metrics import MonitorMetrics
from abflow.monitoring.runner import ExperimentPass, MonitorRunner
from abflow.monitoring.task import LEASE_NAME, MonitorTask
from abflow.serving import GatewaySettings, create_app
from abflow.serving.demo_models import N_FEATURES
from abflow.serving.settings import GatewayConfig, MonitorConfig, demo_config, monitor_interval
from abflow.spec import ExperimentSpec, MonitoringSpec
from abflow.store import EventStore
from abflow.store.leases import Lease
from abflow.store.monitoring import monitor_history
from process_group import start_in_group, stop_process_group

MIN_SAMPLES = 20
MONITOR_GAUGES = (
    "abflow_feature_drift",
    "abflow_prediction_drift",
    "abflow_variant_skew",
    "abflow_monitor_last_run_timestamp_seconds",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


async def eventually(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan, and a client that talks to it in memory."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def demo_spec() -> ExperimentSpec:
    spec = demo_config().experiments[0]
    monitoring = MonitoringSpec(sample_rate=1.0, min_samples=MIN_SAMPLES)
    return spec.model_copy(update={"monitoring": monitoring})


def expected_skew(db: Path, window_start: float) -> dict[str, float]:
    """PSI of the challenger's sampled features against the control's, per feature, from the
    raw rows of one window (every row: fewer than max_samples_per_window were sampled)."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "select variant, features_json from feature_samples "
            "where experiment_key = 'demo' and window_start = ?",
            (window_start,),
        ).fetchall()
    by_variant: dict[str, list[list[float]]] = {}
    for variant, features in rows:
        by_variant.setdefault(variant, []).append(orjson.loads(features))
    names = [f"f{i}" for i in range(N_FEATURES)]

    def columns(variant: str) -> dict[str, list[float]]:
        table = np.array(by_variant[variant])
        return {name: table[:, i].tolist() for i, name in enumerate(names)}

    report = detect_drift(columns("control"), columns("challenger"), features=names, method="psi")
    return {verdict.feature: verdict.statistic for verdict in report.features}


def test_the_monitor_is_off_unless_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ABFLOW_MONITOR_INTERVAL_SECONDS", raising=False)
    assert monitor_interval(GatewaySettings(), GatewayConfig()) == 0.0
    on = GatewayConfig(monitor=MonitorConfig(interval_seconds=60.0))
    assert monitor_interval(GatewaySettings(), on) == 60.0
    monkeypatch.setenv("ABFLOW_MONITOR_INTERVAL_SECONDS", "0")  # the environment wins
    assert monitor_interval(GatewaySettings(), on) == 0.0
    monkeypatch.setenv("ABFLOW_MONITOR_INTERVAL_SECONDS", "5")
    assert monitor_interval(GatewaySettings(), GatewayConfig()) == 5.0


@pytest.mark.anyio
async def test_a_default_gateway_runs_no_monitor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ABFLOW_MONITOR_INTERVAL_SECONDS", raising=False)
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    settings = GatewaySettings(store_url=url, journal_dir=tmp_path / "journal", auth_enabled=False)
    app = create_app(settings, config=GatewayConfig(experiments=[demo_spec()]))
    async with serve(app) as client:
        for i in range(MIN_SAMPLES * 3):
            body = {"unit_id": f"u{i}", "features": [0.1 * i] * N_FEATURES}
            assert (await client.post("/v1/predict", json=body)).status_code == 200
        text = (await client.get("/metrics")).text
    assert not [name for name in (*MONITOR_GAUGES, "abflow_monitor_errors") if name in text]
    with EventStore.open(url) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("select count(*) from leases").scalar() == 0
        assert monitor_history(store, "demo") == []


@pytest.mark.anyio
async def test_the_gateway_monitors_its_experiments(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    db = tmp_path / "abflow.db"
    settings = GatewaySettings(
        store_url=f"sqlite:///{db}",
        journal_dir=tmp_path / "journal",
        auth_enabled=False,
        monitor_interval_seconds=0.2,
    )
    # reference auto, the default: the demo's python: models have no training sample
    config = GatewayConfig(experiments=[demo_spec()])
    app = create_app(settings, config=config)
    n = 6 * MIN_SAMPLES
    features = rng.normal(size=(n, N_FEATURES)).round(6)
    async with serve(app) as client:
        for i, row in enumerate(features.tolist()):
            body = {"unit_id": f"user-{i}", "features": row}
            assert (await client.post("/v1/predict", json=body)).status_code == 200
        store = EventStore.open(settings.store_url)
        try:
            await eventually(
                lambda: store.count_events("sample", "demo") == n, "every sample stored"
            )
            stored_at = time.time()

            async def scrape_after(when: float) -> tuple[float, Samples] | None:
                samples = parse((await client.get("/metrics")).text)
                last = named(samples, "abflow_monitor_last_run_timestamp_seconds")
                ended = last.get((("experiment", "demo"),), 0.0)
                return (ended, samples) if ended > when else None

            # A pass that ended after the last sample was stored may have started before;
            # the pass after it cannot have.
            ended, _ = await eventually(lambda: scrape_after(stored_at), "a pass")
            _, samples = await eventually(lambda: scrape_after(ended), "a pass on every sample")
            history = monitor_history(store, "demo")
        finally:
            store.close()
    assert history, "the pass saved its results"
    latest = max(r.window_start for r in history if r.kind == "variant_skew")
    skew = named(samples, "abflow_variant_skew")
    expected = expected_skew(db, latest)
    assert set(skew) == {(("experiment", "demo"), ("feature", name)) for name in expected}
    assert_allclose(
        [skew[(("experiment", "demo"), ("feature", name))] for name in sorted(expected)],
        [expected[name] for name in sorted(expected)],
        rtol=1e-12,
    )
    # The other gauges show the latest stored verdict of each measure.
    stored = {(r.kind, r.variant, r.feature): r.value for r in history if r.value is not None}
    for (kind, variant, feature), value in stored.items():
        if kind == "feature_drift":
            labels = {"experiment": "demo", "variant": variant, "feature": feature, "method": "psi"}
            key = ("abflow_feature_drift", tuple(sorted(labels.items())))
            assert samples[key] == pytest.approx(value)
        elif kind == "prediction_drift":
            key = ("abflow_prediction_drift", (("experiment", "demo"), ("variant", variant)))
            assert samples[key] == pytest.approx(value)
    assert {variant for kind, variant, _ in stored if kind == "prediction_drift"} == {
        "control",
        "challenger",
    }


class Timeline:
    """What two runners did, in one place: passes in progress, finished, and refusals."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: list[str] = []
        self.overlaps = 0
        self.passes: list[tuple[str, float, float]] = []
        self.refused: dict[str, int] = {}


class RecordingRunner:
    """A runner whose pass only records itself; ``first_waits_for`` makes its first pass
    last until that other runner has been refused the lease."""

    def __init__(self, name: str, timeline: Timeline, first_waits_for: str | None = None) -> None:
        self.name = name
        self.timeline = timeline
        self.first_waits_for = first_waits_for
        self.metrics = MonitorMetrics(CollectorRegistry())

    def run_pass(
        self, keys: Sequence[str] | None = None, *, stop: threading.Event | None = None
    ) -> list[ExperimentPass]:
        t = self.timeline
        with t.lock:
            t.running.append(self.name)
            t.overlaps += len(t.running) > 1
            first = not any(name == self.name for name, _, _ in t.passes)
        started = time.monotonic()
        if first and self.first_waits_for is not None:
            deadline = started + 120.0
            while not t.refused.get(self.first_waits_for):
                assert time.monotonic() < deadline, "the other task was never refused"
                time.sleep(0.01)
        with t.lock:
            t.running.remove(self.name)
            t.passes.append((self.name, started, time.monotonic()))
        return []

    def publish_stored(self, keys: Sequence[str] | None = None) -> None:
        with self.timeline.lock:
            self.timeline.refused[self.name] = self.timeline.refused.get(self.name, 0) + 1


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore.open(f"sqlite:///{tmp_path / 'abflow.db'}") as opened:
        yield opened


@pytest.mark.anyio
async def test_the_lease_keeps_two_tasks_from_running_passes_at_once(
    store: EventStore,
) -> None:
    timeline = Timeline()
    first = MonitorTask(
        RecordingRunner("a", timeline, first_waits_for="b"),
        Lease(store, LEASE_NAME, "a"),
        interval_seconds=0.05,
    )
    second = MonitorTask(
        RecordingRunner("b", timeline), Lease(store, LEASE_NAME, "b"), interval_seconds=0.05
    )
    first.start()
    try:
        await eventually(lambda: timeline.running == ["a"], "the first pass started")
        second.start()
        # "a"'s first pass overruns its interval until "b" has been turned away at least once
        await eventually(lambda: len(timeline.passes) >= 8, "eight passes")
    finally:
        await first.stop(60.0)
        await second.stop(60.0)
    assert timeline.overlaps == 0
    assert timeline.refused.get("b", 0) >= 1
    spans = sorted(timeline.passes, key=lambda p: p[1])
    for (_, _, end), (_, start, _) in itertools.pairwise(spans):
        assert end <= start


class FailingRunner:
    """A pass that raises ``failure``, or reports it for experiment ``fraud``."""

    def __init__(self, failure: Exception, *, per_experiment: bool) -> None:
        self.failure = failure
        self.per_experiment = per_experiment
        self.calls = 0
        self.metrics = MonitorMetrics(CollectorRegistry())

    def run_pass(
        self, keys: Sequence[str] | None = None, *, stop: threading.Event | None = None
    ) -> list[ExperimentPass]:
        self.calls += 1
        if isinstance(self.failure, AbflowError) and self.per_experiment:
            return [ExperimentPass("fraud", [], self.failure)]
        raise self.failure

    def publish_stored(self, keys: Sequence[str] | None = None) -> None:
        msg = "the only task holds the lease"
        raise AssertionError(msg)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "per_experiment", "level", "says"),
    [
        (RuntimeError("a bug"), False, logging.ERROR, "could not run a pass"),
        (StoreUnavailableError("gone"), True, logging.WARNING, "could not run experiment fraud"),
    ],
)
async def test_failures_are_counted_logged_once_and_the_task_goes_on(
    store: EventStore,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    per_experiment: bool,
    level: int,
    says: str,
) -> None:
    runner = FailingRunner(failure, per_experiment=per_experiment)
    task = MonitorTask(runner, Lease(store, LEASE_NAME, "me"), interval_seconds=0.02)
    with caplog.at_level(logging.WARNING, logger="abflow.monitor"):
        task.start()
        try:
            await eventually(lambda: runner.calls >= 5, "five passes")
        finally:
            await task.stop(60.0)
    lines = [r for r in caplog.records if r.name == "abflow.monitor"]
    assert [(r.levelno, says in r.getMessage()) for r in lines] == [(level, True)]
    errors = runner.metrics.registry.get_sample_value(
        "abflow_monitor_errors_total", {"experiment": ""}
    )
    # A failed pass is counted by the task; a failed experiment by the runner (not this one).
    assert (errors or 0.0) == (0.0 if per_experiment else runner.calls)


def write_samples(url: str, rng: np.random.Generator) -> None:
    """Samples for the demo experiment in the current window, as the gateway writes them."""
    spec = demo_spec()
    sampler = FeatureSampler(seed=3)
    now = time.time()
    rows: list[dict[str, Any]] = []
    for variant, shift in (("control", 0.0), ("challenger", 0.5)):
        for i in range(3 * MIN_SAMPLES):
            rows += sampler.offer(
                config=spec.monitoring,
                experiment_key="demo",
                phase=1,
                variant=variant,
                model_version="1",
                request_id=f"{variant}-{i}",
                rows=rng.normal(shift, 1.0, size=(1, N_FEATURES)),
                outputs=[float(rng.random())],
                ts=now,
            )
    with EventStore.open(url) as store:
        store.write_events("sample", rows)


def test_a_process_without_the_lease_shows_the_holders_figures(
    store: EventStore, rng: np.random.Generator
) -> None:
    write_samples(store.url, rng)
    store.register_experiment(demo_spec())
    options = MonitorOptions()
    holder = MonitorRunner(store, options, MonitorMetrics(CollectorRegistry()))
    [done] = holder.run_pass()
    assert done.error is None
    assert done.reports[-1].records
    other = MonitorRunner(store, options, MonitorMetrics(CollectorRegistry()))
    other.publish_stored()
    ran = parse(holder.metrics.exposition().decode())
    copied = parse(other.metrics.exposition().decode())
    for name in MONITOR_GAUGES[:3]:
        assert named(ran, name), name
        assert named(copied, name) == named(ran, name), name
    # the copy says when the holder computed them, not when it copied
    [computed] = {r.computed_at for r in monitor_history(store, "demo")}
    assert named(copied, MONITOR_GAUGES[3]) == {(("experiment", "demo"),): computed}
    assert named(ran, MONITOR_GAUGES[3])[(("experiment", "demo"),)] >= computed


@pytest.mark.slow
def test_two_workers_show_the_gauges_once(tmp_path: Path, rng: np.random.Generator) -> None:
    """``abflow serve --workers 2``: the gauges of whichever worker ran the pass are on the
    one ``/metrics``, one series each (no per-process copies)."""
    url = f"sqlite:///{tmp_path / 'abflow.db'}"
    write_samples(url, rng)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        orjson.dumps(
            {
                "experiments": [demo_spec().model_dump(mode="json", exclude_none=True)],
                "default_experiment": "demo",
                "monitor": {"interval_seconds": 0.5, "reference": "window"},
            }
        ).decode(),
        encoding="utf-8",
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "ABFLOW_STORE_URL": url,
        "ABFLOW_CONFIG": str(config),
        "ABFLOW_JOURNAL_DIR": str(tmp_path / "journal"),
        "TMPDIR": str(tmp_path),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("ABFLOW_MONITOR_INTERVAL_SECONDS", None)
    command = [sys.executable, "-m", "abflow.cli.main", "serve", "--port", str(port)]
    command += ["--workers", "2", "--no-auth", "--log-level", "warning"]
    log = tmp_path / "gateway.log"
    process = start_in_group(command, cwd=tmp_path, env=env, log=log)
    try:
        deadline = time.monotonic() + 300  # generous: a loaded machine starts workers slowly
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no skew gauge within 300 s"
            try:
                samples = parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if named(samples, "abflow_variant_skew"):
                break
            time.sleep(0.2)
    finally:
        stop_process_group(process)
    with EventStore.open(url) as store:
        history = monitor_history(store, "demo")
    [window] = {r.window_start for r in history}
    skew = named(samples, "abflow_variant_skew")
    expected = expected_skew(tmp_path / "abflow.db", window)
    assert {dict(labels)["feature"]: value for labels, value in skew.items()} == pytest.approx(
        expected, rel=1e-12
    )
    for name in MONITOR_GAUGES:
        series = named(samples, name)
        assert series, name
        assert all("pid" not in dict(labels) for labels in series), name
