"""Benchmark of the Kafka event pipeline: journal → Kafka → loader → store, events per second.

    .venv/bin/python bench/kafka.py [--events 400000] [--loaders 2] [--bootstrap host:port]
                                    [--postgres URL]

Each request logs an exposure and a prediction shaped like the gateway's (``append_many``
of the two, as the gateway does), with the gateway's ids (``abflow.events.sink.new_id``: a
per-process prefix and a counter). Random uuid4 ids would measure another workload: SQLite
inserts them into the primary key (and the predictions' request-id index) at random places,
which costs it 2.3 to 2.8 times the CPU per event of the gateway's mostly ascending ids.
Stages, on fresh SQLite stores, in one run:

1. **Baseline**: the same rows written straight to the store with
   ``EventStore.write_events`` in batches of 5,000 (no journal, no Kafka).
2. **Journal → Kafka**: ``EventLog`` with the Kafka writer (group fsync every 50 ms,
   ``acks=all``, idempotent producer, lz4); from the first append until ``close()`` returns
   with every event acknowledged by the broker.
3. **Kafka → store**: ``abflow ingest``'s loader alone, reading what stage 2 wrote, from its
   first message to the last commit (the group join is excluded and reported apart).
4. **End to end**: stages 2 and 3 at once, with ``--loaders`` loader processes (each an
   ``abflow ingest``) in one consumer group that had spread the partitions among them
   before the first append; from the first append until the loaders have stored (and
   committed) every event. Two by default: one loader is one process on one core, and
   while one writes to SQLite (one writer at a time) the other reads and decodes. The store
   is counted once, afterwards: polling it with ``COUNT(*)`` would take a core's share from
   the stages being measured.

CPU seconds per million events are given for each process: this one (the store writes of
stage 1; the journal, the shipper and the producer's librdkafka threads of stage 2; the
loader of stage 3), the broker (read from ``/proc``; "?" for a ``--bootstrap`` cluster) and
the loader children of stage 4, summed. With 2 cores, the sum bounds the end-to-end rate however the
work is spread: 2 cores / (CPU s per event). A PostgreSQL server's own CPU is not counted.

The stores are SQLite files, or with ``--postgres URL`` a fresh schema per stage on that
server (dropped afterwards). Without ``--bootstrap`` the broker is Tansu 0.6.0 with memory storage on a free loopback
port (tests/kafka_broker.py fetches it). Everything shares this machine's cores (2 here):
the gateway's side, the broker and the loader compete for them, as they would not in a
deployment. Figures are noisy on a shared machine; the ratio to the same-run baseline less.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from abflow.events.eventlog import EventLog
from abflow.events.ingest import IngestProgress, Loader
from abflow.events.kafka import KafkaEventWriter, KafkaTarget, ensure_topics
from abflow.events.sink import new_id
from abflow.store import EventStore
from eventlog import prediction  # this folder: the script's own (bench/eventlog.py)

GROUP_OPTIONS = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
PARTITIONS = 6
KINDS = ("exposure", "prediction")


Requests = list[list[tuple[Any, dict[str, Any]]]]


class Cpu:
    """CPU seconds of this process and of the broker (None if not ours) since creation."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.start = self._now()

    def _now(self) -> tuple[float, float | None]:
        if self.broker_pid is None:
            return time.process_time(), None
        fields = Path(f"/proc/{self.broker_pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime, every thread
        return time.process_time(), ticks / os.sysconf("SC_CLK_TCK")

    def spent(self) -> tuple[float, float | None]:
        now = self._now()
        broker = None if now[1] is None or self.start[1] is None else now[1] - self.start[1]
        return now[0] - self.start[0], broker


def requests(n_requests: int) -> Requests:
    """Per request, its exposure and prediction rows (gateway-shaped, the gateway's ids)."""
    out: Requests = []
    now = time.time()
    for i in range(n_requests):
        unit = f"user-{i % 100_000}"
        variant = ("control", "challenger")[i % 2]
        exposure = {
            "event_id": new_id(),
            "ts": now,
            "experiment_key": "fraud-model-v2",
            "phase": 3,
            "unit_id": unit,
            "variant": variant,
            "attributes_json": None,
        }
        ids = {"event_id": new_id(), "request_id": new_id()}  # prediction() draws uuid4s
        out.append([("exposure", exposure), ("prediction", {**prediction(i, now), **ids})])
    return out


def stored_rows(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return sum(
                int(connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
                for table in ("exposures", "predictions")
            )
    except sa.exc.OperationalError:  # the tables are not there yet
        return 0
    finally:
        engine.dispose()


def baseline(url: str, reqs: Requests) -> float:
    exposures = [r[0][1] for r in reqs]
    predictions = [r[1][1] for r in reqs]
    with EventStore.open(url) as store:
        started = time.perf_counter()
        for start in range(0, len(reqs), 2_500):
            store.write_events("exposure", exposures[start : start + 2_500])
            store.write_events("prediction", predictions[start : start + 2_500])
        return time.perf_counter() - started


def journal_to_kafka(target: KafkaTarget, journal: Path, reqs: Requests) -> float:
    log = EventLog(None, journal, store=KafkaEventWriter(target))
    log.start()
    started = time.perf_counter()
    for events in reqs:
        log.append_many(events)
    log.close(timeout_seconds=600)
    elapsed = time.perf_counter() - started
    if log.queue_depth or log.spool_bytes:
        sys.exit(f"events left behind: {log.queue_depth} queued, {log.spool_bytes} spooled")
    return elapsed


def kafka_to_store(target: KafkaTarget, url: str, group: str) -> tuple[float, float, int]:
    """(seconds from the first message to the last commit, join seconds, events read)."""
    first: list[float] = []

    with EventStore.open(url) as store:
        loader = Loader(target, store, group_id=group, kinds=KINDS, batch_events=20_000)
        joined = time.perf_counter()
        original = loader._take

        def take(messages: Any) -> None:
            if messages and not first and any(m.error() is None for m in messages):
                first.append(time.perf_counter())
            original(messages)

        loader._take = take  # type: ignore[method-assign]
        totals = loader.run(until_caught_up=True)
        ended = time.perf_counter()
    return ended - first[0], first[0] - joined, totals.consumed


def loader_child(source: str, url: str) -> None:
    """``--loader-child``: one member of the end-to-end group. Says ``assigned N`` whenever
    its share of partitions changes and ``consumed N`` whenever its stored-and-committed
    count does; stops at a line on stdin and says ``cpu S``, the CPU seconds it spent since
    it was first assigned partitions."""
    from abflow.events.kafka import parse_kafka_url

    target = parse_kafka_url(source)
    with EventStore.open(url) as store:
        loader = Loader(target, store, group_id="e2e", kinds=KINDS, batch_events=20_000)
        said = {"assigned": -1, "consumed": -1}
        assigned_cpu: list[float] = []

        def say(what: str, value: int) -> None:
            if said[what] != value:
                said[what] = value
                print(what, value, flush=True)

        def progress(p: IngestProgress) -> None:
            if loader.assigned_partitions and not assigned_cpu:
                assigned_cpu.append(time.process_time())
            say("assigned", loader.assigned_partitions)
            say("consumed", p.consumed)  # counted once the store and the commit are done

        def stop_on_input() -> None:
            sys.stdin.readline()
            loader.stop()

        threading.Thread(target=stop_on_input, daemon=True).start()
        started = time.process_time()
        loader.run(progress=progress, progress_seconds=0.02)
        print(f"cpu {time.process_time() - (assigned_cpu or [started])[0]}", flush=True)


class LoaderGroup:
    """``n`` loader child processes in one consumer group, and what they last said."""

    def __init__(self, n: int, source: str, url: str) -> None:
        self.children = [
            subprocess.Popen(
                [sys.executable, __file__, "--loader-child", source, url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        self.said: list[dict[str, float]] = [{} for _ in range(n)]
        self.changed = threading.Condition()
        for index in range(n):
            threading.Thread(target=self._listen, args=(index,), daemon=True).start()

    def _listen(self, index: int) -> None:
        stdout = self.children[index].stdout
        assert stdout is not None
        for line in stdout:
            what, _, value = line.partition(" ")
            with self.changed:
                self.said[index][what] = float(value)
                self.changed.notify_all()
        with self.changed:
            self.said[index]["exited"] = 1
            self.changed.notify_all()

    def wait_for(self, what: str, timeout: float, predicate: Any) -> None:
        """Until ``predicate`` holds for what each child last said of ``what``."""

        def exited() -> bool:
            return any("exited" in said for said in self.said)

        def done() -> bool:
            return bool(predicate([said.get(what, 0) for said in self.said])) or exited()

        with self.changed:
            if not self.changed.wait_for(done, timeout):
                sys.exit(f"the loader group did not report {what} in {timeout:.0f} s")
            if exited():
                sys.exit("a loader child exited early")

    def stop(self) -> float:
        """Stop every child; their CPU seconds in all."""
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write("stop\n")
            child.stdin.flush()
        for child in self.children:
            child.wait(timeout=60)
        with self.changed:
            return sum(said.get("cpu", 0.0) for said in self.said)


def end_to_end(
    target: KafkaTarget, journal: Path, url: str, reqs: Requests, loaders: int
) -> tuple[float, float]:
    """(seconds, CPU seconds of the loader children)."""
    total = 2 * len(reqs)
    source = f"kafka://{target.bootstrap_servers}/{target.topic_prefix}?" + "&".join(
        f"{k}={v}" for k, v in GROUP_OPTIONS.items()
    )
    group = LoaderGroup(loaders, source, url)
    # Settled: every partition assigned, and to every member (a member that joined last
    # has none until the group's rebalance completes).
    partitions = PARTITIONS * len(KINDS)
    group.wait_for("assigned", 60, lambda a: sum(a) == partitions and all(a))
    started = time.perf_counter()
    log = EventLog(None, journal, store=KafkaEventWriter(target))
    log.start()
    for events in reqs:
        log.append_many(events)
    log.close(timeout_seconds=600)
    group.wait_for("consumed", 600, lambda c: sum(c) >= total)
    elapsed = time.perf_counter() - started
    loader_cpu = group.stop()
    stored = stored_rows(url)
    if stored != total:
        sys.exit(f"end to end stored {stored} of {total} events")
    return elapsed, loader_cpu


@contextmanager
def store_urls(root: Path, postgres: str | None) -> Iterator[dict[str, str]]:
    """A fresh, upgraded store per stage: SQLite files, or PostgreSQL schemas."""
    from abflow.store import upgrade_store

    names = ("direct", "loaded", "e2e")
    if postgres is None:
        files = {name: f"sqlite:///{root}/{name}.db" for name in names}
        for url in files.values():  # migrated here, so that no stage's CPU time includes it
            upgrade_store(url)
        yield files
        return

    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    schemas = {name: f"bench_kafka_{name}_{uuid.uuid4().hex[:8]}" for name in names}
    separator = "&" if "?" in postgres else "?"
    urls = {
        name: f"{postgres}{separator}options=-csearch_path%3D{schema}"
        for name, schema in schemas.items()
    }
    try:
        with admin.connect() as connection:
            for schema in schemas.values():
                connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        for url in urls.values():
            upgrade_store(url)
        yield urls
    finally:
        with admin.connect() as connection:
            for schema in schemas.values():
                connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def broker(bootstrap: str | None) -> Iterator[tuple[str, int | None]]:
    """The bootstrap address, and the broker's process id when this script started it."""
    if bootstrap:
        yield bootstrap, None
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from kafka_broker import TansuBroker

    with TansuBroker() as tansu:
        yield tansu.bootstrap, tansu.pid


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--loader-child":
        loader_child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000, help="events (2 per request)")
    parser.add_argument("--bootstrap", help="an existing Kafka cluster (default: start Tansu)")
    parser.add_argument("--postgres", help="PostgreSQL URL for the stores (default: SQLite)")
    parser.add_argument(
        "--loaders",
        type=int,
        default=2,
        help="loader processes in the end-to-end stage's consumer group (default 2)",
    )
    args = parser.parse_args()
    if not 1 <= args.loaders <= PARTITIONS:
        parser.error(f"--loaders must be 1 to {PARTITIONS} (the partitions of each topic)")
    reqs = requests(args.events // 2)
    n = 2 * len(reqs)
    timings: list[tuple[str, float, tuple[float, float | None, float | None]]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        broker(args.bootstrap) as (bootstrap, broker_pid),
        store_urls(Path(tmp), args.postgres) as urls,
    ):
        root = Path(tmp)
        prefix = f"bench{os.getpid()}"
        target = KafkaTarget(bootstrap, prefix, GROUP_OPTIONS)
        ensure_topics(target, KINDS, partitions=PARTITIONS)

        cpu = Cpu(broker_pid)
        direct = baseline(urls["direct"], reqs)
        timings.append(("direct to the store (baseline)", direct, (cpu.spent()[0], None, None)))

        cpu = Cpu(broker_pid)
        to_kafka = journal_to_kafka(target, root / "journal-a", reqs)
        own, broker_cpu = cpu.spent()
        timings.append(
            ("journal -> Kafka (acks=all, idempotent)", to_kafka, (own, broker_cpu, None))
        )

        cpu = Cpu(broker_pid)
        load, join, read = kafka_to_store(target, urls["loaded"], "bench")
        if read != n:
            sys.exit(f"the loader read {read} of {n} events")
        own, broker_cpu = cpu.spent()
        name = f"Kafka -> loader -> store (join {join:.1f} s apart)"
        timings.append((name, load, (own, broker_cpu, None)))

        e2e_target = KafkaTarget(bootstrap, prefix + "e2e", GROUP_OPTIONS)
        ensure_topics(e2e_target, KINDS, partitions=PARTITIONS)
        cpu = Cpu(broker_pid)
        whole, loader_cpu = end_to_end(
            e2e_target, root / "journal-b", urls["e2e"], reqs, args.loaders
        )
        own, broker_cpu = cpu.spent()
        name = f"end to end, {args.loaders} loader{'s' * (args.loaders > 1)}"
        timings.append((name, whole, (own, broker_cpu, loader_cpu)))
    load_average = os.getloadavg()[0]
    print(f"{n:,} events (exposure + prediction per request), {PARTITIONS} partitions, "
          f"{'PostgreSQL' if args.postgres else 'SQLite'} store, load average {load_average:.1f}")  # fmt: skip
    print(f"{'stage':<48} {'seconds':>8} {'events/s':>10} {'vs direct':>10}   "
          "CPU s per million events: this process + broker + loaders = sum")  # fmt: skip
    for index, (name, seconds, spent) in enumerate(timings):
        cells = [f"{spent[0] * 1e6 / n:.1f}"]
        for value, applies in ((spent[1], index > 0), (spent[2], index == len(timings) - 1)):
            cells.append("-" if not applies else "?" if value is None else f"{value * 1e6 / n:.1f}")
        total = sum(value for value in spent if value is not None) * 1e6 / n
        unknown = "+?" if "?" in cells else ""
        print(f"{name:<48} {seconds:>8.2f} {n / seconds:>10,.0f} {direct / seconds:>9.2f}x   "
              f"{' + '.join(cells)} = {total:.1f}{unknown}")  # fmt: skip


if __name__ == "__main__":
    main()
