"""Load test of the gateway against a bare FastAPI endpoint serving the same model, one run.

    .venv/bin/python bench/gateway.py [--seconds 8] [--connections 32] [--workers 1 2]
    .venv/bin/python bench/gateway.py --soak-seconds 60 [--soak-rate 1000] [--workers 1]
    .venv/bin/python bench/gateway.py --workers 1 --variant ABFLOW_SHIP_IN_SUBPROCESS=false
    .venv/bin/python bench/gateway.py --workers 1 --shadow 1.0 [--shadow 0.2]

Two servers, each started with uvicorn (uvloop, and httptools through the protocol
``abflow serve`` runs, :data:`PROTOCOL`) on 127.0.0.1:

* (a) baseline: a bare FastAPI endpoint that parses the JSON body with orjson and calls the
  same in-process scikit-learn model (``abflow.serving.demo_models.champion``, 8 features)
  with ``predict_proba`` on the row: no routing, no auth, no logging, no metrics;
* (b) abflow: ``POST /v1/predict`` from ``create_app`` with a two-variant experiment on the
  bundled demo models, bearer-token auth, durable event logging (journal + shipping to a
  SQLite store), Prometheus metrics on, and the prediction cache off (every request carries
  fresh random features, so a cache would only flatter it).

The load generator is ``wrk`` (Debian: ``apt-get install wrk``) when installed, else an
asyncio HTTP/1.1 client in this process. Each server is measured at its peak (closed loop,
``--connections`` connections) and then paced at half of the baseline's peak, where the
latency percentiles compare like with like (the pacing is wrk's per-connection delay, a
closed loop: the rate reached is printed, and a slower server is offered a little less).
Peak memory (VmHWM) per worker, and per event shipper process when shipping runs in a
child, is read from /proc. After (b) stops gracefully, the prediction events in its store
are counted against the 2xx answers the client received. The load average is printed at
the start and the end: the machine may be shared, numbers are noisy, ratios less so.

With ``--shadow SHARE`` (repeatable), (bs…) is (b) with a third variant mirrored (a shadow
copy of ``SHARE`` of the requests to the challenger's model, logged with its own prediction
event): its latency beside (b)'s in the same rounds is what shadow traffic costs the
served answer.

With ``--soak-seconds`` only (b) runs, paced at ``--soak-rate`` for that long, while each
worker's (and shipper's) resident memory (VmRSS) is sampled every few seconds: a leak shows
as growth after the warm-up (first 10 s), which is what the table reports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import orjson

from abflow.security.tokens import generate_token, hash_token
from abflow.serving.demo_models import N_FEATURES
from common import cmdline, free_port, load_average, stop_process_group  # bench/common.py

PROTOCOL = "abflow.serving.gateway_protocol:GatewayProtocol"
"""What ``abflow serve`` runs: httptools, predictions answered without ASGI; any other
app (the baseline) is served through ASGI as with ``--http httptools``."""

BASELINE_APP = """
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from abflow.serving.demo_models import champion

model = champion()
app = FastAPI()


@app.post("/v1/predict")
async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    score = float(model.predict_proba([body["features"]])[0, 1])
    return Response(orjson.dumps({"prediction": score}), media_type="application/json")
"""

GATEWAY_CONFIG = """
default_experiment: bench
experiments:
  - key: bench
    unit: user_id
    variants:
      - {name: control, model: "python:abflow.serving.demo_models:champion"}
      - {name: challenger, model: "python:abflow.serving.demo_models:challenger"}
    weights: [0.5, 0.5]
tokens:
  - {name: bench, role: service, token_hash: "%s"}
"""

SHADOW_CONFIG = """
default_experiment: bench
experiments:
  - key: bench
    unit: user_id
    variants:
      - {name: control, model: "python:abflow.serving.demo_models:champion"}
      - {name: challenger, model: "python:abflow.serving.demo_models:challenger"}
      - {name: shadow, model: "python:abflow.serving.demo_models:challenger"}
    weights: [0.5, 0.5, 0.0]
    shadow: {variants: [shadow], share: %s}
tokens:
  - {name: bench, role: service, token_hash: "%s"}
"""

WRK_SCRIPT = """
math.randomseed(%(seed)d)
local bodies = {}
for i = 1, 20000 do
  local f = {}
  for j = 1, %(n)d do f[j] = string.format("%%.6f", math.random() * 4 - 2) end
  bodies[i] = '{"unit_id":"user-' .. math.random(1, 1000000) .. '","features":[' .. table.concat(f, ",") .. ']}'
end
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  counter = counter + 1
  return wrk.format(nil, "/v1/predict", nil, bodies[(counter %% 20000) + 1])
end
%(delay)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass
class Load:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    acknowledged: int = 0
    """2xx answers: each promises that its prediction event is stored."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


LoadFn = Callable[[int, str, float, int, "float | None", int], Load]


class Server:
    """A uvicorn process tree on a free port; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.acknowledged = 0  # 2xx answers over every load run against this server
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                msg = f"server exited during start:\n{err}"
                raise SystemExit(msg)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if _ready(self.port):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                msg = "server did not start within 120 s"
                raise SystemExit(msg)
            time.sleep(0.2)

    def drive(
        self,
        load: LoadFn,
        token: str,
        seconds: float,
        connections: int,
        rate: float | None,
        seed: int,
    ) -> Load:
        """One load run against this server, counting its acknowledged answers."""
        run = load(self.port, token, seconds, connections, rate, seed)
        self.acknowledged += run.acknowledged
        return run

    def worker_pids(self) -> list[int]:
        children = _children(self.process.pid)
        return children or [self.process.pid]

    def shipper_pids(self) -> list[int]:
        """The workers' event shipper processes (``ABFLOW_SHIP_IN_SUBPROCESS``), if any."""
        return [
            child
            for worker in self.worker_pids()
            for child in _all_children(worker)
            if "abflow.events.shipper" in cmdline(child)
        ]

    def peak_rss_mb(self, pids: list[int] | None = None) -> list[float]:
        peaks = []
        for pid in self.worker_pids() if pids is None else pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        return peaks

    def stop(self) -> None:
        stop_process_group(self.process)


def _all_children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _children(pid: int) -> list[int]:
    return [p for p in _all_children(pid) if "spawn_main" in cmdline(p)]  # workers, not helpers


def _ready(port: int) -> bool:
    request = f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(request.encode())
            reply = sock.recv(1024)
    except OSError:
        return False
    return reply.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404"))


# --- load generators -----------------------------------------------------------------------


def run_wrk(
    port: int, token: str, seconds: float, connections: int, rate: float | None, seed: int
) -> Load:
    delay = ""
    if rate is not None:
        interval_ms = connections * 1000.0 / rate
        delay = f"delay = function() return {interval_ms:.3f} end"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"seed": seed, "n": N_FEATURES, "token": token, "delay": delay})
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "5s",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    n, duration_us, socket_errors, status_errors, p50, p95, p99, _max, _mean = (
        float(x) for x in line.split()[1:]
    )
    return Load(
        int(n),
        duration_us / 1e6,
        int(socket_errors + status_errors),
        p50 / 1e3,
        p95 / 1e3,
        p99 / 1e3,
        acknowledged=int(n - status_errors),
    )


async def _client(
    port: int,
    token: str,
    stop_at: float,
    interval: float | None,
    latencies: list[float],
    errors: list[int],
    rng: random.Random,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            features = [round(rng.uniform(-2, 2), 6) for _ in range(N_FEATURES)]
            body = orjson.dumps({"unit_id": f"user-{rng.randrange(10**6)}", "features": features})
            head = (
                f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status.startswith(b"HTTP/1.1 200"):
                errors.append(1)
            if interval is not None:
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    finally:
        writer.close()


def run_python(
    port: int, token: str, seconds: float, connections: int, rate: float | None, seed: int
) -> Load:
    latencies: list[float] = []
    errors: list[int] = []
    interval = connections / rate if rate else None

    async def main() -> float:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(
            *(
                _client(port, token, stop_at, interval, latencies, errors, random.Random(seed + i))
                for i in range(connections)
            )
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return Load(
        len(latencies),
        elapsed,
        len(errors),
        pct(0.5),
        pct(0.95),
        pct(0.99),
        acknowledged=len(latencies) - len(errors),
    )


# --- soak: memory over a long paced run -----------------------------------------------------

SOAK_WARMUP_S = 10.0
SOAK_SAMPLE_S = 2.0
SOAK_FLAT_PCT = 5.0  # growth after warm-up below this share of the warm RSS counts as flat


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def soak(server: Server, load: LoadFn, token: str, args: argparse.Namespace) -> None:
    """Drive ``server`` at a fixed rate and print per-process RSS after warm-up, at end, peak.

    Workers and their event shipper processes (when shipping runs in a child) are both shown:
    memory moved out of a worker is still memory.
    """
    pids = server.worker_pids()
    shippers = server.shipper_pids()
    labels = {pid: f"worker {i}" for i, pid in enumerate(pids, 1)}
    labels.update({pid: f"shipper {i}" for i, pid in enumerate(shippers, 1)})
    samples: dict[int, list[tuple[float, float]]] = {pid: [] for pid in labels}
    result: list[Load] = []
    runner = threading.Thread(
        target=lambda: result.append(
            server.drive(load, token, args.soak_seconds, args.connections, args.soak_rate, 7)
        ),
        daemon=True,
    )
    started = time.monotonic()
    runner.start()
    while runner.is_alive() and time.monotonic() - started < args.soak_seconds + 60:
        now = time.monotonic() - started
        for pid in labels:
            rss = _rss_mb(pid)
            if rss is not None:
                samples[pid].append((now, rss))
        runner.join(SOAK_SAMPLE_S)
    if runner.is_alive() or not result:
        msg = "soak load did not finish"
        raise SystemExit(msg)
    run = result[0]
    print(
        f"\nsoak: (b) abflow /v1/predict, {len(pids)} worker(s), {run.seconds:.0f} s at "
        f"{args.soak_rate:,.0f} req/s offered: {run.rate:,.0f} req/s served, "
        f"{run.errors} errors, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms"
    )
    header = (
        f"{'process':>10} {'MB at 10 s':>10} {'MB at mid':>10} {'MB at end':>10} {'peak MB':>8} "
        f"{'growth MB':>10} {'%/min':>7}  verdict"
    )
    print(header)
    print("-" * len(header))
    for pid, label in labels.items():
        points = samples[pid]
        warm = [p for p in points if p[0] >= SOAK_WARMUP_S]
        if len(warm) < 2:
            print(f"{label:>10}  too few samples after warm-up")
            continue
        (t0, first), (t1, last) = warm[0], warm[-1]
        mid = warm[len(warm) // 2][1]  # linear growth (a leak) or a plateau (warm-up)
        peak = max(rss for _, rss in points)
        growth = last - first
        share = 100 * growth / first
        per_min = share / ((t1 - t0) / 60)
        flat = share < SOAK_FLAT_PCT and run.errors == 0
        print(
            f"{label:>10} {first:>10.1f} {mid:>10.1f} {last:>10.1f} {peak:>8.1f} {growth:>+10.1f} "
            f"{per_min:>+7.2f}  {'flat' if flat else 'NOT flat'}"
        )
    print(
        f"flat: growth from {SOAK_WARMUP_S:g} s to the end below {SOAK_FLAT_PCT:g} % and zero "
        f"errors; VmRSS sampled every {SOAK_SAMPLE_S:g} s"
    )


def _parse_env(text: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if any(len(pair) != 2 for pair in pairs):
        msg = f"--variant {text!r}: expected NAME=VALUE[,NAME=VALUE]"
        raise SystemExit(msg)
    return dict(pairs)


# --- checks --------------------------------------------------------------------------------


def stored_check(store_url: str, acknowledged: int) -> str:
    """Compare the prediction events in the store (after a graceful stop) with the 2xx answers.

    Every answered request promises its prediction event. The client stops counting at the
    end of a run while requests already sent are still answered (and logged), so the store
    may hold a few more than were counted; fewer means a lost event.
    """
    from abflow.store import EventStore

    with EventStore.open(store_url) as store:
        stored = store.count_events("prediction")
    verdict = "all stored" if stored >= acknowledged else f"MISSING {acknowledged - stored}"
    return (
        f"events: {acknowledged:,} answers acknowledged, {stored:,} prediction events in the "
        f"store after a graceful stop: {verdict}"
    )


# --- the run -------------------------------------------------------------------------------


def _median_load(runs: list[Load]) -> Load:
    """Per-field medians over rounds (rate as requests over seconds of the median round)."""
    by_rate = sorted(runs, key=lambda r: r.rate)
    middle = by_rate[len(by_rate) // 2]
    return Load(
        requests=middle.requests,
        seconds=middle.seconds,
        errors=sum(r.errors for r in runs),
        p50_ms=median([r.p50_ms for r in runs]),
        p95_ms=median([r.p95_ms for r in runs]),
        p99_ms=median([r.p99_ms for r in runs]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians shown")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--soak-seconds", type=float, default=0.0, help="memory soak of (b) only")
    parser.add_argument("--soak-rate", type=float, default=1000.0, help="req/s during the soak")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE[,NAME=VALUE]",
        help="also measure (b) with these environment settings, in the same interleaved rounds",
    )
    parser.add_argument(
        "--shadow",
        type=float,
        action="append",
        default=[],
        metavar="SHARE",
        help="also measure (b) with a shadow variant mirrored on this share of requests",
    )
    args = parser.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    load: LoadFn = run_wrk if use_wrk else run_python
    print(
        f"load generator: {'wrk' if use_wrk else 'asyncio client'}; {os.cpu_count()} cores; "
        f"{args.seconds:g} s per measurement, {args.connections} connections; "
        f"load average at the start: {load_average()}"
    )

    token = generate_token()
    python = sys.executable
    rows = []
    checks: list[str] = []
    with tempfile.TemporaryDirectory(prefix="abflow-bench-") as tmp:
        work = Path(tmp)
        (work / "bench_baseline.py").write_text(BASELINE_APP)
        (work / "gateway.yaml").write_text(GATEWAY_CONFIG % hash_token(token))
        uvicorn = [
            python,
            "-m",
            "uvicorn",
            "--loop",
            "uvloop",
            "--http",
            PROTOCOL,
            "--no-access-log",
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
        ]
        for workers in args.workers:
            env = {**os.environ, "PYTHONPATH": str(work)}
            store_url = f"sqlite:///{work / f'abflow-{workers}.db'}"
            results: dict[str, tuple[Load, Load, list[float], list[float]]] = {}
            specs: dict[str, tuple[list[str], dict[str, str]]]
            specs = {
                "a": ([*uvicorn, "--workers", str(workers), "bench_baseline:app"], env),
                "b": (
                    [
                        *uvicorn,
                        "--workers",
                        str(workers),
                        "--factory",
                        "abflow.serving.app:create_app",
                    ],
                    {
                        **env,
                        "ABFLOW_CONFIG": str(work / "gateway.yaml"),
                        "ABFLOW_STORE_URL": store_url,
                        "ABFLOW_JOURNAL_DIR": str(work / f"journal-{workers}"),
                        "ABFLOW_CACHE_ENABLED": "false",
                    },
                ),
            }
            for i, extra in enumerate(args.variant, 1):  # (b) again with other settings
                command, b_env = specs["b"]
                specs[f"b{i}"] = (
                    command,
                    {
                        **b_env,
                        "ABFLOW_STORE_URL": f"sqlite:///{work / f'abflow-{workers}-{i}.db'}",
                        "ABFLOW_JOURNAL_DIR": str(work / f"journal-{workers}-{i}"),
                        **_parse_env(extra),
                    },
                )
            for i, share in enumerate(args.shadow, 1):  # (b) with a mirrored variant
                config = work / f"gateway-shadow-{i}.yaml"
                config.write_text(SHADOW_CONFIG % (share, hash_token(token)))
                command, b_env = specs["b"]
                specs[f"bs{i}"] = (
                    command,
                    {
                        **b_env,
                        "ABFLOW_CONFIG": str(config),
                        "ABFLOW_STORE_URL": f"sqlite:///{work / f'abflow-{workers}-s{i}.db'}",
                        "ABFLOW_JOURNAL_DIR": str(work / f"journal-{workers}-s{i}"),
                    },
                )
            if args.soak_seconds > 0:
                server = Server(*specs["b"], work)
                try:
                    server.drive(load, token, 1.0, args.connections, None, 1)  # warm up
                    soak(server, load, token, args)
                finally:
                    server.stop()
                print(stored_check(store_url, server.acknowledged))
                continue
            servers: dict[str, Server] = {}
            peak_runs: dict[str, list[Load]] = {name: [] for name in specs}
            paced_runs: dict[str, list[Load]] = {name: [] for name in specs}
            try:
                for name, (command, server_env) in specs.items():
                    servers[name] = Server(command, server_env, work)
                    servers[name].drive(load, token, 1.0, args.connections, None, 1)  # warm up
                # Interleaved rounds (a, b, a, b, ...): drift in the machine's load hits both.
                for round_ in range(args.rounds):
                    for name, server in servers.items():
                        peak_runs[name].append(
                            server.drive(
                                load,
                                token,
                                args.seconds,
                                args.connections,
                                None,
                                10 + round_,
                            )
                        )
                half = median([r.rate for r in peak_runs["a"]]) / 2
                for round_ in range(args.rounds):
                    for name, server in servers.items():
                        paced_runs[name].append(
                            server.drive(
                                load,
                                token,
                                args.seconds,
                                args.connections,
                                half,
                                20 + round_,
                            )
                        )
                for name, server in servers.items():
                    results[name] = (
                        _median_load(peak_runs[name]),
                        _median_load(paced_runs[name]),
                        server.peak_rss_mb(),
                        server.peak_rss_mb(server.shipper_pids()),
                    )
            finally:
                for server in servers.values():
                    server.stop()
            for name, server in servers.items():
                if name != "a":
                    url = specs[name][1]["ABFLOW_STORE_URL"]
                    checks.append(
                        f"{workers} worker(s), ({name}): " + stored_check(url, server.acknowledged)
                    )
            rows.append((workers, results))
    if args.soak_seconds > 0:
        return

    print()
    header = (
        f"{'workers':>7}  {'server':<26} {'peak req/s':>10} {'ratio':>6} {'err':>4}  "
        f"{'rate':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}  {'peak MB/worker':>14} {'shipper MB':>10}"
    )
    print(header)
    print("-" * len(header))
    for workers, results in rows:
        base_peak = results["a"][0]
        labels = {"a": "(a) bare FastAPI + model", "b": "(b) abflow /v1/predict"}
        labels.update({f"b{i}": f"(b{i}) {extra}"[:26] for i, extra in enumerate(args.variant, 1)})
        labels.update(
            {f"bs{i}": f"(bs{i}) shadow share {x:g}" for i, x in enumerate(args.shadow, 1)}
        )
        for name, label in labels.items():
            peak, paced, rss, shipper_rss = results[name]
            memory = "/".join(f"{m:.0f}" for m in rss)
            shipper_memory = "/".join(f"{m:.0f}" for m in shipper_rss) or "-"
            print(
                f"{workers:>7}  {label:<26} {peak.rate:>10,.0f} {peak.rate / base_peak.rate:>6.2f} "
                f"{peak.errors + paced.errors:>4}  {paced.rate:>7,.0f} {paced.p50_ms:>7.2f} "
                f"{paced.p95_ms:>7.2f} {paced.p99_ms:>7.2f}  {memory:>14} {shipper_memory:>10}"
            )
        a = results["a"][1]
        for name in labels:
            if name != "a":
                b = results[name][1]
                print(
                    f"{'':>7}  ({name}) adds at half of (a)'s peak: p50 "
                    f"{b.p50_ms - a.p50_ms:+.2f} ms, p99 {b.p99_ms - a.p99_ms:+.2f} ms"
                )
        plain = results["b"][1]
        for name in labels:
            if name.startswith("bs"):
                mirrored = results[name][1]
                print(
                    f"{'':>7}  ({name}) vs (b), shadow copies' cost to the served answer: p50 "
                    f"{mirrored.p50_ms - plain.p50_ms:+.2f} ms, p99 "
                    f"{mirrored.p99_ms - plain.p99_ms:+.2f} ms"
                )
    print(
        f"\nmedians of {args.rounds} interleaved rounds; rate/p50/p95/p99: paced at half of "
        "(a)'s peak; err: non-2xx and socket errors in all runs"
    )
    for check in checks:
        print(check)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
