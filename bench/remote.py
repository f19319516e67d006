"""A real MLflow scoring server, called directly and through the abflow gateway, one run.

    .venv/bin/python bench/remote.py [--seconds 5] [--connections 32] [--requests 1500]

Starts ``mlflow models serve`` (one uvicorn worker, ``--env-manager local``) on a
scikit-learn logistic regression with a DataFrame signature (columns f0..f7, logged with
``pyfunc_predict_fn="predict_proba"``), and two abflow gateways (uvicorn, uvloop +
httptools through the protocol ``abflow serve`` runs, one worker, bearer auth, durable
event logging to SQLite, cache off) whose experiment sends every unit to that server: one with micro-batching on (the default), one
with ``batch: false``; and, as the reference for what the gateway costs without any remote
call, a third whose variant is an in-process scikit-learn model (``demo_models``). Then,
in one run:

1. **Clients.** The same one-row request, sent one at a time from this process with
   httpx, aiohttp, httpcore and abflow's lean client (``h1client``): CPU-ms per request in
   this process (``getrusage``), which is what the gateway pays per call to the server.
2. **One connection.** Direct and through abflow (batching on; and the in-process
   reference), one request at a time:
   p50 and p95 latency, requests per second, and CPU-ms per request of each process (the
   scoring server, the gateway's worker, its event shipper), from ``/proc/PID/stat`` utime
   + stime before and after (10 ms ticks, over thousands of requests).
3. **Many connections.** ``--connections`` concurrent clients, direct and through abflow
   with batching on and off (and the in-process reference): requests per second, the ratio to direct, CPU-ms per request
   of each process, and the mean rows per request the server received (the gateway's
   ``abflow_batch_rows`` histogram). The gateway's CPU per request minus the in-process
   reference's is what proxying itself costs.

The load generator is an asyncio HTTP/1.1 client (uvloop) in this process. Wall time on a
shared machine is noisy; CPU-ms per request much less so, and the load average is printed
at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from abflow.security.tokens import generate_token, hash_token
from common import cmdline, free_port, load_average, stop_process_group
from gateway import PROTOCOL, Server

N_FEATURES = 8  # as the gateway's in-process control model (demo_models), the fallback
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")

LOG_MODEL = """
import sys, mlflow, pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from mlflow.models import infer_signature

x, y = make_classification(n_samples=2000, n_features=8, random_state=5)
frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
model = LogisticRegression().fit(frame, y)
mlflow.set_tracking_uri(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.sklearn.log_model(
        model, name="model", signature=infer_signature(frame, model.predict_proba(frame)),
        pyfunc_predict_fn="predict_proba",
    )
print(run.info.run_id)
"""

BACKENDS = """
backends:
  "%(url)s":
    columns: %(columns)s
    output: proba
    class_index: 1
    batch: %(batch)s
    timeout_ms: 5000
"""
LOCAL_MODEL = "python:abflow.serving.demo_models:challenger"

GATEWAY_CONFIG = """
default_experiment: bench
experiments:
  - key: bench
    unit: user_id
    variants:
      - {name: control, model: "python:abflow.serving.demo_models:champion"}
      - {name: remote, model: "%(model)s"}
    weights: [0.0, 1.0]
%(backends)s
tokens:
  - {name: bench, role: service, token_hash: "%(service)s"}
  - {name: viewer, role: viewer, token_hash: "%(viewer)s"}
"""


# --- processes ------------------------------------------------------------------------------


class ScoringServer:
    """``mlflow models serve`` on a free port; its output goes to a file, not a pipe."""

    def __init__(self, reference: str, env: dict[str, str], work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/invocations"
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        self._log = (work / "mlflow-serve.log").open("w")
        self.process = subprocess.Popen(
            [
                *(str(mlflow_cli), "models", "serve", "-m", reference, "--env-manager", "local"),
                *("-h", "127.0.0.1", "-p", str(self.port), "-w", "1"),
            ],
            env=env,
            cwd=work,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while not _answers(self.port, "/ping"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (work / "mlflow-serve.log").read_text()[-2000:]
                msg = f"mlflow models serve did not start:\n{log}"
                raise SystemExit(msg)
            time.sleep(0.3)

    def stop(self) -> None:
        stop_process_group(self.process)
        self._log.close()


def _answers(port: int, path: str) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += _tree(child)
    return found


def _cpu_ms(pids: list[int]) -> float:
    """utime + stime of ``pids`` so far, in ms."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total * TICK_MS


# --- load -----------------------------------------------------------------------------------


@dataclass
class Run:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu_ms: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def cpu_per_request(self, process: str) -> float:
        return self.cpu_ms[process] / max(self.requests, 1)


Body = Callable[[random.Random], bytes]


async def _connection(
    port: int, head: bytes, body: Body, stop_at: float, rng: random.Random, run: Run
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            payload = body(rng)
            started = time.perf_counter()
            writer.write(head + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            run.latencies.append(time.perf_counter() - started)
            run.requests += 1
            if not status.startswith(b"HTTP/1.1 200"):
                run.errors += 1
    finally:
        writer.close()


def drive(
    port: int,
    path: str,
    token: str | None,
    body: Body,
    seconds: float,
    connections: int,
    processes: dict[str, list[int]],
    seed: int,
) -> Run:
    """``connections`` closed-loop clients for ``seconds``; CPU of each process measured."""
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"{auth}content-length: "
    ).encode()
    run = Run(0, 0, 0.0, [], {})

    async def main() -> None:
        before = {name: _cpu_ms(pids) for name, pids in processes.items()}
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(
            *(
                _connection(port, head, body, stop_at, random.Random(seed + i), run)
                for i in range(connections)
            )
        )
        run.seconds = time.perf_counter() - started
        run.cpu_ms = {name: _cpu_ms(pids) - before[name] for name, pids in processes.items()}

    uvloop.run(main())
    return run


def _features(rng: random.Random) -> list[float]:
    return [round(rng.uniform(-2, 2), 6) for _ in range(N_FEATURES)]


def direct_body(rng: random.Random) -> bytes:
    return orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": [_features(rng)]}})


def gateway_body(rng: random.Random) -> bytes:
    return orjson.dumps({"unit_id": f"user-{rng.randrange(10**6)}", "features": _features(rng)})


# --- clients --------------------------------------------------------------------------------


async def _client_cost(name: str, url: str, n: int) -> tuple[float, float]:
    """CPU-ms per request in this process and p50 ms, for ``n`` one-at-a-time calls."""
    body = direct_body(random.Random(3))
    headers = {"content-type": "application/json"}
    call: Callable[[], Awaitable[bytes]]
    close: Callable[[], Awaitable[None]]
    if name == "httpx":
        import httpx

        client = httpx.AsyncClient()

        async def call() -> bytes:
            return (await client.post(url, content=body, headers=headers)).content

        close = client.aclose
    elif name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession()

        async def call() -> bytes:
            async with session.post(url, data=body, headers=headers) as response:
                return await response.read()

        close = session.close
    elif name == "httpcore":
        import httpcore

        pool = httpcore.AsyncConnectionPool()

        async def call() -> bytes:
            response = await pool.request(
                "POST", url, content=body, headers=[(b"content-type", b"application/json")]
            )
            return response.content

        close = pool.aclose
    else:
        from abflow.serving.backends.h1client import H1Pool

        lean = H1Pool(url)

        async def call() -> bytes:
            return (await lean.request("POST", "/invocations", body)).content

        close = lean.aclose
    for _ in range(50):
        orjson.loads(await call())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        orjson.loads(await call())
        latencies.append(time.perf_counter() - started)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent = usage.ru_utime + usage.ru_stime - cpu
    await close()
    latencies.sort()
    return spent * 1000 / n, latencies[n // 2] * 1000


def _batch_rows(port: int, token: str) -> tuple[float, float]:
    """Sum and count of the gateway's ``abflow_batch_rows`` histogram for the server."""
    import httpx

    text = httpx.get(
        f"http://127.0.0.1:{port}/metrics", headers={"authorization": f"Bearer {token}"}
    ).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("abflow_batch_rows_sum{") and "invocations" in line:
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("abflow_batch_rows_count{") and "invocations" in line:
            count += float(line.rsplit(" ", 1)[1])
    return total, count


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1500, help="per client in part 1")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="idle CPU measurement")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average at the start: {load_average()}")
    service, viewer = generate_token(), generate_token()
    with tempfile.TemporaryDirectory(prefix="abflow-bench-remote-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ABFLOW_"))}
        env.update(MLFLOW_TRACKING_URI=tracking, PYTHONWARNINGS="ignore")
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        logged = subprocess.run(
            [sys.executable, "-c", LOG_MODEL, tracking],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        )
        reference = f"runs:/{logged.stdout.split()[-1]}/model"
        scoring = ScoringServer(reference, env, work)
        gateways: dict[str, Server] = {}
        try:
            for batch in ("true", "false", "local"):
                config = work / f"gateway-{batch}.yaml"
                backends = BACKENDS % {"url": scoring.url, "columns": COLUMNS, "batch": batch}
                config.write_text(
                    GATEWAY_CONFIG
                    % {
                        "model": scoring.url if batch != "local" else LOCAL_MODEL,
                        "backends": backends if batch != "local" else "",
                        "service": hash_token(service),
                        "viewer": hash_token(viewer),
                    }
                )
                gateways[batch] = Server(
                    [
                        *(sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http"),
                        *(PROTOCOL, "--no-access-log", "--log-level", "warning"),
                        *("--host", "127.0.0.1", "--factory", "abflow.serving.app:create_app"),
                    ],
                    {
                        **env,
                        "ABFLOW_CONFIG": str(config),
                        "ABFLOW_STORE_URL": f"sqlite:///{work / f'abflow-{batch}.db'}",
                        "ABFLOW_JOURNAL_DIR": str(work / f"journal-{batch}"),
                        "ABFLOW_CACHE_ENABLED": "false",
                    },
                    work,
                )
            report(args, scoring, gateways, service, viewer)
        finally:
            for server in gateways.values():
                server.stop()
            scoring.stop()
    print(f"load average at the end: {load_average()}")


def report(
    args: argparse.Namespace,
    scoring: ScoringServer,
    gateways: dict[str, Server],
    service: str,
    viewer: str,
) -> None:
    print(f"\n1. clients, one request at a time to the scoring server ({args.requests} each)")
    print(f"{'client':<10} {'CPU-ms/req':>10} {'p50 ms':>7}")
    for name in ("httpx", "aiohttp", "httpcore", "lean"):
        cpu, p50 = uvloop.run(_client_cost(name, scoring.url, args.requests))
        print(f"{name:<10} {cpu:>10.3f} {p50:>7.2f}")

    model_pids = _tree(scoring.process.pid)
    processes: dict[str, dict[str, list[int]]] = {"direct": {"model server": model_pids}}
    for batch, server in gateways.items():
        pids = _tree(server.process.pid)
        shipper = [p for p in pids if "abflow.events.shipper" in cmdline(p)]
        processes[batch] = {
            "model server": model_pids,
            "gateway worker": [p for p in pids if p not in shipper],
            "event shipper": shipper,
        }
    targets = {
        "direct": (scoring.port, "/invocations", None, direct_body),
        "true": (gateways["true"].port, "/v1/predict", service, gateway_body),
        "false": (gateways["false"].port, "/v1/predict", service, gateway_body),
        "local": (gateways["local"].port, "/v1/predict", service, gateway_body),
    }
    for name, (port, path, token, body) in targets.items():  # warm up
        drive(port, path, token, body, 1.0, 4, processes[name], 1)
    idle = _idle_cpu_ms_per_second(processes["true"], args.idle_seconds)
    print(
        f"\nidle, CPU-ms per second over {args.idle_seconds:g} s: "
        + ", ".join(f"{name} {value:.2f}" for name, value in idle.items())
    )

    one = {
        name: drive(port, path, token, body, args.seconds, 1, processes[name], 7)
        for name, (port, path, token, body) in targets.items()
        if name != "false"
    }
    rows_before = _batch_rows(gateways["true"].port, viewer)
    many = {
        name: drive(port, path, token, body, args.seconds, args.connections, processes[name], 9)
        for name, (port, path, token, body) in targets.items()
    }
    rows_after = _batch_rows(gateways["true"].port, viewer)
    calls = rows_after[1] - rows_before[1]
    mean_rows = (rows_after[0] - rows_before[0]) / calls if calls else float("nan")
    labels = {
        "direct": "direct",
        "true": "abflow, batching on",
        "false": "abflow, batching off",
        "local": "abflow, in-process",
    }
    header = (
        f"{'connections':>11}  {'path':<21} {'req/s':>7} {'ratio':>6} {'err':>4} "
        f"{'p50 ms':>7} {'p95 ms':>7}  {'server CPU-ms':>13} {'gateway CPU-ms':>14} "
        f"{'shipper CPU-ms':>14} {'rows/call':>9}"
    )
    print("\n2-3. direct and through abflow (CPU-ms per request of each process)")
    print(header)
    print("-" * len(header))
    for connections, runs in ((1, one), (args.connections, many)):
        base = runs["direct"].rate
        for name, run in runs.items():
            gateway_ms = run.cpu_per_request("gateway worker") if name != "direct" else None
            shipper_ms = run.cpu_per_request("event shipper") if name != "direct" else None
            rows = mean_rows if name == "true" and runs is many else float("nan")
            print(
                f"{connections:>11}  {labels[name]:<21} {run.rate:>7,.0f} {run.rate / base:>6.2f} "
                f"{run.errors:>4} {run.pct(0.5):>7.2f} {run.pct(0.95):>7.2f}  "
                f"{run.cpu_per_request('model server'):>13.3f} "
                f"{_opt(gateway_ms):>14} {_opt(shipper_ms):>14} {_opt(rows, 1):>9}"
            )
    added = one["true"].pct(0.5) - one["direct"].pct(0.5)
    gateway_cpu = [r.cpu_per_request("gateway worker") for r in (one["true"], many["true"])]
    ratio = many["true"].rate / many["direct"].rate
    print(
        "\ntargets: gateway CPU per proxied request <= 0.35 ms: "
        f"{gateway_cpu[0]:.3f} at 1 connection, {gateway_cpu[1]:.3f} at {args.connections} "
        f"(worker only); added p50 <= 0.5 ms at 1 connection: {added:+.2f} ms; throughput "
        f">= 1.5x direct at {args.connections} connections with batching: {ratio:.2f}x"
    )
    proxy = [
        r.cpu_per_request("gateway worker") - local.cpu_per_request("gateway worker")
        for r, local in ((one["true"], one["local"]), (many["true"], many["local"]))
    ]
    print(
        "the proxying alone (gateway CPU-ms per request, remote minus in-process model): "
        f"{proxy[0]:.3f} at 1 connection, {proxy[1]:.3f} at {args.connections}"
    )
    print("rows/call: mean rows per request the scoring server received from the gateway")
    print("abflow, in-process: the same gateway with the model in its worker (the reference)")


def _idle_cpu_ms_per_second(processes: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """What each process spends with no request at all (timers, housekeeping)."""
    before = {name: _cpu_ms(pids) for name, pids in processes.items()}
    time.sleep(seconds)
    return {name: (_cpu_ms(pids) - before[name]) / seconds for name, pids in processes.items()}


def _opt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
