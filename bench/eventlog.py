"""Benchmark of the gateway's durable event log, with baselines measured in the same run.

    .venv/bin/python bench/eventlog.py [--events 50000] [--rate 5000] [--seconds 3]

1. Append cost, µs per event (p50, p99, mean), of ``EventLog.append`` for prediction rows
   as the gateway makes them: without fsync, with group fsync (the default, every 50 ms),
   while shipping to SQLite, and with an fsync inside every append. Baseline: the same
   orjson bytes written with one ``os.write`` each to a plain file, with no framing,
   checksum, lock or queue (a JSON-lines log).
2. Throughput into SQLite: events per second from the first append until ``close()``
   returns with every event in the store. Baseline: ``EventStore.write_events`` called
   directly with batches of the same size (no journal in front).
3. The power-loss window: appends paced at ``--rate`` events/s for ``--seconds`` with group
   fsync every 10 and 50 ms; the longest an acknowledged event waited for its fsync, and
   how many events one fsync covered. A power loss can take at most one such group.

Everything runs in a temporary folder, removed afterwards. The machine may be shared: the
figures are noisy, the ratios against the same-run baselines less so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from abflow.events.eventlog import EventLog
from abflow.store import EventStore


def prediction(i: int, ts: float | None = None) -> dict[str, Any]:
    """A prediction row shaped like the gateway's (14 columns, random uuid4 ids), stamped
    ``ts`` or now; bench/kafka.py sends the same rows."""
    return {
        "event_id": uuid.uuid4().hex,
        "ts": time.time() if ts is None else ts,
        "request_id": uuid.uuid4().hex,
        "experiment_key": "fraud-model-v2",
        "phase": 3,
        "unit_id": f"user-{i % 100_000}",
        "variant": ("control", "challenger")[i % 2],
        "model_version": ("7", "8")[i % 2],
        "latency_ms": 3.25 + (i % 17) / 10,
        "is_fallback": False,
        "is_shadow": False,
        "score": (i % 1000) / 1000,
        "output_json": None,
        "features_hash": "9f2c" * 16,
        "error": None,
    }


def timed(call: Callable[[], object], n: int) -> list[float]:
    """Microseconds per call, measured one call at a time."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        start = clock()
        call()
        out.append((clock() - start) / 1000)
    return out


def summary(samples: list[float]) -> tuple[float, float, float, float, float]:
    """p50, p99, p99.9, max and mean."""
    ordered = sorted(samples)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        statistics.median(ordered),
        quantile(0.99),
        quantile(0.999),
        ordered[-1],
        statistics.fmean(ordered),
    )


def append_costs(root: Path, n: int) -> list[tuple[str, tuple[float, float, float, float, float]]]:
    rows = [prediction(i) for i in range(n)]
    results = []

    fd = os.open(root / "plain.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    it = iter(rows)
    samples = timed(lambda: os.write(fd, orjson.dumps(next(it)) + b"\n") and None, n)
    os.close(fd)
    results.append(("baseline: os.write of orjson line, no framing", summary(samples)))

    cases: list[tuple[str, str | None, float | None, int]] = [
        ("EventLog.append, no fsync", None, None, n),
        ("EventLog.append, group fsync 50 ms", None, 0.05, n),
        ("EventLog.append, group fsync 50 ms, shipping to SQLite", "sqlite", 0.05, n),
        ("EventLog.append, fsync every append", None, 0.0, max(200, n // 50)),
    ]
    for number, (label, store, fsync, count) in enumerate(cases):
        url = f"sqlite:///{root / f'ship-{number}.db'}" if store else None
        log = EventLog(url, root / f"journal-{number}", fsync_interval_seconds=fsync)
        log.start()
        it = iter(rows[:count])

        def append(log: EventLog = log, it: Iterator[dict[str, Any]] = it) -> None:
            log.append("prediction", next(it))

        samples = timed(append, count)
        log.close(timeout_seconds=120)
        results.append((label, summary(samples)))
    return results


def throughput(root: Path, n: int) -> list[tuple[str, float]]:
    rows = [prediction(i) for i in range(n)]
    url = f"sqlite:///{root / 'direct.db'}"
    store = EventStore.open(url)
    started = time.perf_counter()
    for start in range(0, n, 500):
        store.write_events("prediction", rows[start : start + 500])
    direct = n / (time.perf_counter() - started)
    store.close()

    url = f"sqlite:///{root / 'shipped.db'}"
    EventStore.open(url).close()  # create the schema outside the timing, as for the baseline
    log = EventLog(url, root / "journal-throughput")
    log.start()
    started = time.perf_counter()
    for row in rows:
        log.append("prediction", row)
    log.close(timeout_seconds=300)
    shipped = n / (time.perf_counter() - started)
    with EventStore.open(url) as check:
        stored = check.count_events("prediction")
    if stored != n:
        msg = f"only {stored} of {n} events reached the store"
        raise SystemExit(msg)
    return [
        ("baseline: EventStore.write_events, batches of 500", direct),
        ("EventLog append -> journal -> shipper -> SQLite", shipped),
    ]


def power_loss_window(
    root: Path, rate: int, seconds: float
) -> list[tuple[str, int, float, float, int, float]]:
    results = []
    for interval in (0.01, 0.05):
        log = EventLog(None, root / f"journal-window-{interval}", fsync_interval_seconds=interval)
        log.start()
        total = int(rate * seconds)
        started = time.perf_counter()
        for i in range(total):
            due = started + i / rate
            while time.perf_counter() < due:
                time.sleep(0.0005)
            log.append("prediction", prediction(i))
        stats_before_close = log.sync_stats
        log.close()
        groups = max(1, stats_before_close.syncs)
        results.append(
            (
                f"{interval * 1000:.0f} ms",
                stats_before_close.syncs,
                stats_before_close.max_window_seconds * 1000,
                stats_before_close.synced_events / groups,
                stats_before_close.max_events_per_sync,
                stats_before_close.fsync_seconds_total / groups * 1000,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=5_000, help="events/s for the window test")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="abflow-bench-eventlog-") as tmp:
        root = Path(tmp)
        costs = append_costs(root, args.events)
        rates = throughput(root, args.events)
        windows = power_loss_window(root, args.rate, args.seconds)

    base = costs[0][1]
    print(f"Append cost, {args.events:,} prediction rows (µs per event)\n")
    print("| writer | p50 µs | p99 µs | p99.9 µs | max µs | mean µs | p50 vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, (p50, p99, p999, worst, mean) in costs:
        print(
            f"| {label} | {p50:.1f} | {p99:.1f} | {p999:.1f} | {worst:,.0f} | {mean:.1f} "
            f"| {p50 / base[0]:.1f}x |"
        )
    print(f"\nThroughput into SQLite, {args.events:,} prediction rows\n")
    print("| path | events/s | vs baseline |")
    print("|---|---:|---:|")
    for label, rate in rates:
        print(f"| {label} | {rate:,.0f} | {rate / rates[0][1]:.2f}x |")
    print(f"\nPower-loss window at {args.rate:,} events/s for {args.seconds:g} s\n")
    print(
        "| fsync interval | fsyncs | longest wait for fsync ms "
        "| events per fsync (mean) | (max) | fsync ms (mean) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for interval, syncs, window, mean_events, max_events, fsync_ms in windows:
        print(
            f"| {interval} | {syncs} | {window:.1f} | {mean_events:,.0f} "
            f"| {max_events:,} | {fsync_ms:.2f} |"
        )


if __name__ == "__main__":
    main()
