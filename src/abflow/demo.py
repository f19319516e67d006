"""The end-to-end scenario behind ``make demo``: two fraud models, a week of traffic, a verdict.

1. Train a champion (logistic regression) and a challenger (gradient boosting) on a
   synthetic fraud data set from scikit-learn (no download). The challenger leans on
   ``merchant_risk``, a feature the champion ignores, and wins on the training distribution.
2. Register both in MLflow and serve them by alias (``models:/fraud-demo@champion``); if the
   registry cannot be used, fall back to pickled files and say so.
3. Simulate a population over several days through the real gateway (``create_app`` over an
   in-process ASGI transport). From day 3 on, ``merchant_risk`` drifts upward for legitimate
   shoppers: the challenger starts blocking them (false positives), the champion does not.
4. Send labels (chargebacks, a day later) and checkouts as outcomes, analyse the experiment
   from the store, write the HTML report and print which model should win, and why.

Time is simulated: the events carry the simulated clock, so the report shows days.

Every run is independent of the ones before it in the same store: its experiment key and its
users' ids carry a fresh run id. Outcomes are attributed to a unit by its id from the unit's
first exposure on, so a second run that reused ``user-<n>`` on the same simulated week would
count the first run's checkouts too (``checkout_value`` doubled).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abflow.analysis.results import ExperimentResult
from abflow.errors import InvalidArgumentError
from abflow.spec import ExperimentSpec, parse_experiment

__all__ = ["DemoOptions", "DemoOutcome", "run_demo"]

DAY = 86400.0
FEATURES = ("amount_z", "velocity", "account_age", "device_score", "geo_mismatch", "hour_z",
            "basket_z", "merchant_risk")  # fmt: skip
COUNTRIES = ("NL", "DE", "FR", "US")
DEVICES = ("ios", "android", "web")
MODEL_TIMEOUT_MS = 60_000.0
"""The demo's model timeout. It replays a week of traffic as fast as the machine allows, in
bursts; on a slow or busy machine a model call can wait a second behind the others, and a
timeout would turn it into a fallback, so the same seed would no longer give the same
results. The gateway's own default (1 s) is for live traffic."""
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How big the scenario is; the defaults run in about a minute on a laptop."""

    store_url: str | None = None
    users: int = 2500
    days: int = 7
    drift_day: int = 3
    seed: int = 20261126
    output: Path = Path("abflow-report.html")
    workdir: Path = Path(".abflow/demo")
    use_registry: bool = True
    concurrency: int = 16
    samples: int = 24_000
    run_id: str | None = None
    """Prefix of this run's unit ids and suffix of its key; fresh when None. Runs that share
    a ``seed`` and a ``run_id`` route every user alike (runs in one store need distinct ids)."""

    def __post_init__(self) -> None:
        if self.run_id is not None and not _RUN_ID.fullmatch(self.run_id):
            msg = f"--run-id: {self.run_id!r} is not 1 to 16 letters, digits, '-' or '_'"
            raise InvalidArgumentError(msg)


@dataclass(slots=True)
class DemoOutcome:
    """What the demo produced: where to look and what it decided."""

    experiment_key: str
    store_url: str
    report_path: Path
    verdict: str
    winner: str | None
    summary: str
    model_source: str
    requests: int
    seconds: float
    result: ExperimentResult
    notes: list[str] = field(default_factory=list)


# --- data and models -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_pool: np.ndarray
    y_pool: np.ndarray


def _make_data(seed: int, samples: int) -> _Data:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=samples,
        n_features=7,
        n_informative=4,
        n_redundant=1,
        weights=[0.85],
        class_sep=0.8,
        flip_y=0.02,
        random_state=seed,
    )
    rng = np.random.default_rng(seed)
    merchant_risk = 1.6 * y + rng.normal(0.0, 1.0, size=y.size)
    x = np.column_stack([x, merchant_risk])
    half = y.size // 2
    return _Data(x[:half], y[:half], x[half:], y[half:])


def _train(data: _Data) -> tuple[Any, Any, dict[str, float]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score
    from sklearn.pipeline import Pipeline

    keep = list(range(len(FEATURES) - 1))  # the champion never sees merchant_risk
    champion = Pipeline(
        [
            ("columns", ColumnTransformer([("keep", "passthrough", keep)])),
            ("model", LogisticRegression(max_iter=500)),
        ]
    ).fit(data.x_train, data.y_train)
    challenger = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(
        data.x_train, data.y_train
    )
    holdout = {
        "champion_recall": float(recall_score(data.y_pool, champion.predict(data.x_pool))),
        "challenger_recall": float(recall_score(data.y_pool, challenger.predict(data.x_pool))),
    }
    return champion, challenger, holdout


def _register(champion: Any, challenger: Any, options: DemoOptions) -> tuple[dict[str, str], str]:
    """Model references for the spec: MLflow aliases, else pickled files (and why)."""
    if options.use_registry:
        try:
            from abflow import registry

            registry.register_model("fraud-demo", champion, alias="champion")
            registry.register_model("fraud-demo", challenger, alias="challenger")
            return (
                {
                    "champion": "models:/fraud-demo@champion",
                    "challenger": "models:/fraud-demo@challenger",
                },
                "MLflow registry (" + registry.registry_location().tracking_uri + ")",
            )
        except Exception as exc:  # any registry failure: the demo goes on with files
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            source = f"pickled files (registry unavailable: {reason})"
    else:
        source = "pickled files (registry disabled)"
    import pickle

    folder = options.workdir / "models"
    folder.mkdir(parents=True, exist_ok=True)
    refs = {}
    for name, model in (("champion", champion), ("challenger", challenger)):
        path = folder / f"{name}.pkl"
        path.write_bytes(pickle.dumps(model))
        refs[name] = f"file:{path.resolve()}"
    return refs, source


def _spec(key: str, refs: dict[str, str], seed: int) -> ExperimentSpec:
    return parse_experiment(
        {
            "key": key,
            # The key and the unit ids carry the run id; the hash seed does not, so a given
            # --seed and --run-id put every simulated user in the same variant on every run.
            "seed": f"fraud-demo-{seed}",
            "name": "Fraud model: gradient boosting challenger vs logistic champion",
            "unit": "user_id",
            "variants": [
                {"name": "champion", "model": refs["champion"]},
                {"name": "challenger", "model": refs["challenger"]},
            ],
            "weights": [0.5, 0.5],
            "metrics": [
                {"name": "fraud_recall", "kind": "recall", "role": "primary"},
                {
                    "name": "false_positive_rate",
                    "kind": "false_positive_rate",
                    "role": "guardrail",
                    "direction": "decrease",
                    "margin": 0.10,
                },
                {
                    "name": "checkout_rate",
                    "kind": "conversion",
                    "event": "checkout",
                    "role": "guardrail",
                    "margin": 0.02,
                },
                {"name": "precision", "kind": "precision"},
                {
                    "name": "latency_p95",
                    "kind": "latency",
                    "quantile": 0.95,
                    "role": "guardrail",
                    "direction": "decrease",
                    "margin": 1.0,
                },
                {"name": "checkout_value", "kind": "sum", "event": "checkout_value"},
                {
                    "name": "cost",
                    "kind": "cost",
                    "direction": "decrease",
                    "cost_per_1000": 0.05,
                    "cost_per_second": 0.02,
                },
            ],
            "analysis": {
                "method": "sequential",
                "correction": "holm",
                "alpha": 0.05,
                "relative": False,
                "minimum_detectable_effect": 0.1,
            },
        }
    )


# --- traffic -----------------------------------------------------------------------------


class _SimulatedClock:
    """An event sink that stamps events with the simulated time, then hands them on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.now = time.time()

    def start(self) -> None:
        self.inner.start()

    def append(self, kind: Any, row: dict[str, Any]) -> None:
        row["ts"] = self.now
        self.inner.append(kind, row)

    def close(self, timeout_seconds: float = 10.0) -> None:
        self.inner.close(timeout_seconds)

    @property
    def queue_depth(self) -> int:
        return int(self.inner.queue_depth)

    @property
    def spool_bytes(self) -> int:
        return int(self.inner.spool_bytes)


@dataclass(frozen=True, slots=True)
class _Visit:
    unit: str
    attributes: dict[str, str]
    features: list[float]
    is_fraud: bool
    amount: float


def _day_visits(
    rng: np.random.Generator, data: _Data, users: int, day: int, drift_day: int, run_id: str
) -> list[_Visit]:
    active = rng.random(users) < 0.45
    visits = []
    drift = max(day - drift_day + 1, 0) * 0.55  # grows each day after it starts
    for user in np.flatnonzero(active):
        index = int(rng.integers(data.y_pool.size))
        row = data.x_pool[index].copy()
        is_fraud = bool(data.y_pool[index])
        if not is_fraud:
            row[-1] += drift
        attributes = {
            "country": COUNTRIES[user % len(COUNTRIES)],
            "device": DEVICES[(user // 7) % len(DEVICES)],
        }
        amount = float(np.exp(rng.normal(3.6, 0.7)))
        unit = f"{run_id}-user-{user}"
        visits.append(_Visit(unit, attributes, [float(v) for v in row], is_fraud, amount))
    return visits


async def _traffic(
    key: str,
    spec: ExperimentSpec,
    url: str,
    options: DemoOptions,
    start: float,
    progress: Any,
    run_id: str,
) -> int:
    import httpx

    from abflow.events.eventlog import EventLog
    from abflow.security.roles import Role
    from abflow.security.tokens import InMemoryTokenStore, create_token
    from abflow.serving.app import create_app
    from abflow.serving.settings import GatewayConfig, GatewaySettings

    journal = options.workdir / "journal" / key
    sink = _SimulatedClock(EventLog(url, journal))
    tokens = InMemoryTokenStore()
    token, _ = create_token(tokens, "demo", Role.ADMIN)
    settings = GatewaySettings(
        store_url=url, journal_dir=journal, backend_timeout_ms=MODEL_TIMEOUT_MS
    )
    config = GatewayConfig(experiments=[spec], default_experiment=key, store_url=url)
    app = create_app(settings, config=config, events=sink, tokens=tokens)
    rng = np.random.default_rng(options.seed)
    data = _make_data(options.seed, options.samples)
    headers = {"Authorization": f"Bearer {token}"}
    limit = asyncio.Semaphore(options.concurrency)
    requests = 0
    task = progress.add_task("serving a week of traffic", total=options.days)
    async with app.router.lifespan_context(app):
        app.state.abflow.gateway.sampler.clock = lambda: sink.now  # samples' windows too
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=headers, timeout=60
        ) as client:

            async def one(visit: _Visit) -> dict[str, Any]:
                async with limit:
                    response = await client.post(
                        "/v1/predict",
                        json={
                            "unit_id": visit.unit,
                            "attributes": visit.attributes,
                            "features": visit.features,
                        },
                    )
                response.raise_for_status()
                body: dict[str, Any] = response.json()
                return body

            for day in range(options.days):
                visits = _day_visits(rng, data, options.users, day, options.drift_day, run_id)
                outcomes: list[dict[str, Any]] = []
                for hour in range(0, 24, 3):
                    chunk = visits[hour * len(visits) // 24 : (hour + 3) * len(visits) // 24]
                    sink.now = start + day * DAY + hour * 3600.0
                    answers = await asyncio.gather(*(one(v) for v in chunk))
                    requests += len(chunk)
                    for visit, answer in zip(chunk, answers, strict=True):
                        outcomes.extend(_outcomes(visit, answer, sink.now))
                for first in range(0, len(outcomes), 500):
                    response = await client.post(
                        "/v1/outcomes", json={"outcomes": outcomes[first : first + 500]}
                    )
                    response.raise_for_status()
                progress.advance(task)
    return requests


def _outcomes(visit: _Visit, answer: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The chargeback label a day later; a checkout when a legitimate visit was approved."""
    score = answer["prediction"]
    blocked = isinstance(score, int | float) and score >= 0.5
    rows: list[dict[str, Any]] = [
        {"name": "label", "value": float(visit.is_fraud), "request_id": answer["request_id"],
         "unit_id": visit.unit, "ts": now + DAY},
    ]  # fmt: skip
    if not blocked and not visit.is_fraud:
        rows.append({"name": "checkout", "value": 1.0, "unit_id": visit.unit, "ts": now + 60})
        rows.append(
            {"name": "checkout_value", "value": visit.amount, "unit_id": visit.unit, "ts": now + 60}
        )
    return rows


# --- the scenario -------------------------------------------------------------------------


def run_demo(options: DemoOptions, console: Any) -> DemoOutcome:
    """Run the whole scenario, printing progress on ``console`` (a Rich console)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from abflow.analysis import AnalysisOptions, analyze, render_html
    from abflow.store import EventStore, resolve_url
    from abflow.store.engine import display_url

    began = time.perf_counter()
    for noisy in ("mlflow", "alembic"):  # their INFO lines would break the progress bars
        logging.getLogger(noisy).setLevel(logging.WARNING)
    url = resolve_url(options.store_url)
    options.workdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_id = options.run_id or secrets.token_hex(2)
    key = f"fraud-demo-{stamp}-{run_id}"
    now = time.time()
    start = math.floor(now / DAY) * DAY - options.days * DAY  # midnight, a week ago
    notes: list[str] = []
    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        step = progress.add_task("training champion and challenger", total=1)
        data = _make_data(options.seed, options.samples)
        champion, challenger, holdout = _train(data)
        progress.advance(step)
        step = progress.add_task("registering models", total=1)
        refs, source = _register(champion, challenger, options)
        progress.advance(step)
        spec = _spec(key, refs, options.seed)
        store = EventStore.open(url, clock=lambda: start)
        try:
            store.register_experiment(spec)
        finally:
            store.close()
        requests = asyncio.run(_traffic(key, spec, url, options, start, progress, run_id))
        step = progress.add_task("analysing", total=1)
        result = analyze(
            url,
            key,
            AnalysisOptions(dimensions=("country", "device"), store_label=display_url(url)),
        )
        options.output.write_text(render_html(result), encoding="utf-8")
        progress.advance(step)
    notes.append(
        f"holdout recall before drift: champion {holdout['champion_recall']:.1%}, "
        f"challenger {holdout['challenger_recall']:.1%}"
    )
    if source.startswith("MLflow"):
        try:
            from abflow import registry

            registry.log_experiment_result(
                key,
                {"verdict": result.decision.verdict, "winner": result.decision.winner or ""},
                {
                    f"{m.name}.{c.variant}.effect": c.effect
                    for m in result.metrics
                    for c in m.comparisons
                    if math.isfinite(c.effect)
                },
                [options.output],
            )
            notes.append("result logged to MLflow as a run of experiment abflow/" + key)
        except Exception as exc:  # logging the result is a courtesy, not the demo's point
            notes.append(f"could not log the result to MLflow: {type(exc).__name__}")
    return DemoOutcome(
        experiment_key=key,
        store_url=display_url(url),
        report_path=options.output,
        verdict=result.decision.verdict,
        winner=result.decision.winner,
        summary=result.decision.summary,
        model_source=source,
        requests=requests,
        seconds=time.perf_counter() - began,
        result=result,
        notes=notes,
    )


# --- the drift scenario (abflow demo --scenario drift) ------------------------------------


@dataclass(frozen=True, slots=True)
class DriftOptions:
    """The fraud case of issue #13 on a simulated clock: inputs drift on ``drift_day``."""

    store_url: str | None = None
    users: int = 8000
    days: int = 6
    drift_day: int = 3
    drift_size: float = 1.2
    """How far ``merchant_risk`` of legitimate shoppers moves (in its standard deviations)."""
    window_hours: float = 6.0
    label_delay_days: float = 7.0
    """Chargebacks take about a week: no label arrives before the drift is detected."""
    seed: int = 20261126
    samples: int = 24_000
    workdir: Path = Path(".abflow/demo")
    stop_at_rollback: bool = True


@dataclass(slots=True)
class DriftOutcome:
    """When the drift started, when the monitor saw it, and what the rollout did."""

    experiment_key: str
    store_url: str
    drift_start: float
    window_hours: float
    alarm_at: float | None
    """End of the first window whose prediction-drift alarm on the challenger fired."""
    false_alarms: int
    """Prediction-drift alarms on the challenger in windows before the drift started."""
    rolled_back_at: float | None
    labels_at_alarm: int
    """Labels in the store when the alarm fired (the point: none yet)."""
    requests: int
    seconds: float
    timeline: list[str] = field(default_factory=list)

    @property
    def detection_delay_hours(self) -> float | None:
        return None if self.alarm_at is None else (self.alarm_at - self.drift_start) / 3600.0


class _BufferedEvents:
    """An event sink that stamps the simulated time and keeps rows until the next flush."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pending: dict[str, list[dict[str, Any]]] = {}

    def start(self) -> None:
        """Nothing to start."""

    def append(self, kind: Any, row: dict[str, Any]) -> None:
        row["ts"] = self.now
        self.pending.setdefault(str(kind), []).append(row)

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Nothing to close."""

    @property
    def queue_depth(self) -> int:
        return sum(map(len, self.pending.values()))

    @property
    def spool_bytes(self) -> int:
        return 0

    def flush(self, store: Any) -> None:
        for kind, rows in self.pending.items():
            store.write_events(kind, rows)
        self.pending = {}


def _drift_spec(key: str, refs: dict[str, str], options: DriftOptions) -> ExperimentSpec:
    return parse_experiment(
        {
            "key": key,
            "name": "Fraud challenger retrained on last month's data",
            "variants": [
                {"name": "champion", "model": refs["champion"]},
                {"name": "challenger", "model": refs["challenger"]},
            ],
            "metrics": [
                {
                    "name": "false_positive_rate",
                    "kind": "false_positive_rate",
                    "role": "guardrail",
                    "direction": "decrease",
                    "margin": 0.1,
                }
            ],
            "monitoring": {
                "sample_rate": 1.0,
                "window_hours": options.window_hours,
                "max_samples_per_window": 1000,
                "min_samples": 300,
                "features": list(FEATURES),
            },
            "rollout": {
                "steps": [
                    {"traffic": 0.5, "min_duration_hours": 24.0 * 28, "min_samples": 0},
                    {"traffic": 1.0},
                ],
                "guardrails": ["false_positive_rate"],
                "on_monitor_alarm": "rollback",
            },
        }
    )


def _hour_visits(
    rng: np.random.Generator, data: _Data, users: int, shift: float, run_id: str
) -> list[_Visit]:
    """One simulated hour: each user visits with probability 0.45 / 24."""
    visits = []
    for user in np.flatnonzero(rng.random(users) < 0.45 / 24):
        index = int(rng.integers(data.y_pool.size))
        row = data.x_pool[index].copy()
        is_fraud = bool(data.y_pool[index])
        if not is_fraud:
            row[-1] += shift
        unit = f"{run_id}-user-{user}"
        visits.append(_Visit(unit, {}, [float(v) for v in row], is_fraud, 0.0))
    return visits


async def _drift_traffic(
    spec: ExperimentSpec, options: DriftOptions, start: float, store: Any, outcome: DriftOutcome
) -> None:
    import httpx

    from abflow.events.sink import outcome_row
    from abflow.monitoring.monitor import MonitorOptions, monitor_experiment
    from abflow.rollout.controller import tick
    from abflow.security.roles import Role
    from abflow.security.tokens import InMemoryTokenStore, create_token
    from abflow.serving.app import create_app
    from abflow.serving.catalog import InMemoryCatalog
    from abflow.serving.settings import GatewayConfig, GatewaySettings
    from abflow.store.monitoring import quality_counts

    sink = _BufferedEvents()
    tokens = InMemoryTokenStore()
    token, _ = create_token(tokens, "demo", Role.ADMIN)
    settings = GatewaySettings(
        store_url=None,
        journal_dir=options.workdir / "journal",
        backend_timeout_ms=MODEL_TIMEOUT_MS,
    )
    config = GatewayConfig(experiments=[spec], default_experiment=spec.key)
    app = create_app(settings, config=config, events=sink, tokens=tokens, catalog=InMemoryCatalog())
    rng = np.random.default_rng(options.seed)
    data = _make_data(options.seed, options.samples)
    labels: list[dict[str, Any]] = []
    window_steps = max(1, round(options.window_hours))
    monitor_options = MonitorOptions(lookback_windows=2)
    async with app.router.lifespan_context(app):
        gateway = app.state.abflow.gateway
        gateway.sampler.clock = lambda: sink.now

        async def follow(now: float) -> str:
            """Tick the rollout; a move reaches the gateway as a store follower's would."""
            result = tick(store, spec.key, now=now)
            if result.action in ("started", "advanced", "rolled_back"):
                moved = store.get_experiment(spec.key).spec
                await asyncio.to_thread(gateway.add_experiment, moved)
                reason = f" ({result.reasons[0]})" if result.action == "rolled_back" else ""
                outcome.timeline.append(
                    f"{_hours(now - start)}: rollout {result.action.replace('_', ' ')}{reason}"
                )
            return result.action

        await follow(start)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as client:
            for hour in range(options.days * 24):
                sink.now = start + hour * 3600.0
                shift = options.drift_size if sink.now >= outcome.drift_start else 0.0
                for visit in _hour_visits(rng, data, options.users, shift, spec.key[-4:]):
                    response = await client.post(
                        "/v1/predict", json={"unit_id": visit.unit, "features": visit.features}
                    )
                    response.raise_for_status()
                    labels.append(
                        outcome_row(
                            unit_id=visit.unit,
                            name="label",
                            value=float(visit.is_fraud),
                            request_id=response.json()["request_id"],
                            experiment_key=spec.key,
                            ts=sink.now + options.label_delay_days * DAY,
                        )
                    )
                    outcome.requests += 1
                if (hour + 1) % window_steps:
                    continue
                now = start + (hour + 1) * 3600.0
                sink.flush(store)
                arrived = [row for row in labels if row["ts"] <= now]
                labels = [row for row in labels if row["ts"] > now]
                if arrived:
                    store.write_events("outcome", arrived)
                reports = monitor_experiment(store, spec, monitor_options, now=now)
                drifted = [
                    r
                    for report in reports[-1:]
                    for r in report.alarms
                    if r.kind == "prediction_drift" and r.variant == "challenger"
                ]
                if drifted and reports[-1].window_start < outcome.drift_start:
                    outcome.false_alarms += 1
                elif drifted and outcome.alarm_at is None:
                    outcome.alarm_at = now
                    counts = quality_counts(store, spec.key, start, now)
                    outcome.labels_at_alarm = sum(c.n_labelled for c in counts.values())
                    outcome.timeline.append(
                        f"{_hours(now - start)}: prediction-drift alarm on the challenger "
                        f"(PSI {drifted[0].value:.2f}), {outcome.labels_at_alarm} labels so far"
                    )
                if await follow(now) == "rolled_back":
                    outcome.rolled_back_at = now
                    if options.stop_at_rollback:
                        return


def _hours(seconds: float) -> str:
    return f"day {int(seconds // DAY)} {seconds % DAY / 3600:04.1f} h"


def run_drift_scenario(options: DriftOptions) -> DriftOutcome:
    """Serve the fraud case through a real gateway and store, monitor each window, tick the
    rollout; return when the drift was seen and what the rollout did."""
    from abflow.store import EventStore, resolve_url
    from abflow.store.engine import display_url

    began = time.perf_counter()
    url = resolve_url(options.store_url)
    options.workdir.mkdir(parents=True, exist_ok=True)
    key = f"fraud-drift-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    start = math.floor(time.time() / DAY) * DAY - options.days * DAY
    data = _make_data(options.seed, options.samples)
    champion, challenger, _ = _train(data)
    refs, _ = _register(
        champion, challenger, DemoOptions(use_registry=False, workdir=options.workdir)
    )
    spec = _drift_spec(key, refs, options)
    outcome = DriftOutcome(
        experiment_key=key,
        store_url=display_url(url),
        drift_start=start + options.drift_day * DAY,
        window_hours=options.window_hours,
        alarm_at=None,
        false_alarms=0,
        rolled_back_at=None,
        labels_at_alarm=0,
        requests=0,
        seconds=0.0,
    )
    store = EventStore.open(url, clock=lambda: start)
    try:
        store.register_experiment(spec)
        asyncio.run(_drift_traffic(spec, options, start, store, outcome))
    finally:
        store.close()
    outcome.timeline.insert(0, f"{_hours(outcome.drift_start - start)}: input drift starts")
    outcome.timeline.sort()
    outcome.seconds = time.perf_counter() - began
    return outcome
