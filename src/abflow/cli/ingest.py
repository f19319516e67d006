"""``abflow ingest``: load events from Kafka into the store (see :mod:`abflow.events.ingest`).

Runs as a long-lived consumer-group member (a Deployment: one replica per few partitions),
or with ``--once`` / ``--max-seconds`` as a job that exits when caught up (a CronJob, a
test). Progress goes to stderr; the last line (stdout) is the totals, as JSON with
``--json``.
"""

from __future__ import annotations

import signal
from typing import Annotated

import orjson
import typer

from abflow.cli.console import err_console, fail, out_console
from abflow.cli.options import StoreOption

__all__ = ["ingest", "register"]

EXAMPLES = """
Examples:

  [bold]abflow ingest --from kafka://kafka-0:9092,kafka-1:9092/abflow --store postgresql+psycopg://abflow@db/abflow[/]
    run as a consumer-group member until stopped (SIGTERM: finish the batch, commit, leave)

  [bold]abflow ingest --from kafka://127.0.0.1:9092/abflow --once --json[/]
    load everything published so far into the default store, print the totals, exit

Each query parameter of the URL is a librdkafka setting, e.g.
kafka://broker:9093/abflow?security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-512&sasl.username=abflow&sasl.password=…

Exit codes: 0 done (stopped, caught up or out of time), 2 bad options, Kafka or store unusable.
"""


def ingest(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Kafka URL: kafka://host:port[,host:port…]/topic-prefix[?librdkafka.setting=value…], "
            "or a secret reference holding one (env:…, file:…, vault:…).",
            show_default=False,
        ),
    ],
    store: StoreOption = None,
    group: Annotated[
        str, typer.Option("--group", help="Consumer group id (loaders sharing it split the work).")
    ] = "abflow-ingest",
    kinds: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Event kind to load (repeatable); default: every kind."),
    ] = None,
    batch_events: Annotated[
        int, typer.Option("--batch-events", min=1, help="Most events per group commit.")
    ] = 20_000,
    batch_seconds: Annotated[
        float,
        typer.Option("--batch-seconds", min=0.001, help="Longest an event waits for its commit."),
    ] = 0.5,
    once: Annotated[
        bool,
        typer.Option("--once", help="Exit when every assigned partition is loaded to its end."),
    ] = False,
    max_seconds: Annotated[
        float | None,
        typer.Option("--max-seconds", min=0.0, help="Exit after this long (committing first)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines on stderr.")] = False,
) -> None:
    """Load events from Kafka into the store: idempotent group commits, offsets committed
    only after the store committed, so a crash loses and doubles nothing."""
    from abflow.errors import ConfigError
    from abflow.events.ingest import IngestProgress, Loader, summary_line
    from abflow.events.kafka import parse_kafka_url
    from abflow.security.secrets import is_secret_reference, resolve_secret
    from abflow.store import EventStore
    from abflow.store.clickhouse import is_clickhouse_url
    from abflow.store.clickhouse_writer import ClickHouseWriter
    from abflow.store.engine import display_url, resolve_url

    try:  # a URL holding a SASL password can come from a secret, not the command line
        url = resolve_secret(source) if is_secret_reference(source) else source
        target = parse_kafka_url(url)
    except ConfigError as exc:
        fail(f"--from: {exc}")
    opened: EventStore | ClickHouseWriter
    if store is not None and is_clickhouse_url(store):  # the warehouse: chdb:// or clickhouse://
        opened, shown = ClickHouseWriter(store), display_url(store)
    else:
        opened, shown = EventStore.open(store), display_url(resolve_url(store))
    try:
        loader = Loader(
            target,
            opened,
            group_id=group,
            kinds=kinds or None,
            batch_events=batch_events,
            batch_seconds=batch_seconds,
        )

        def stop(_signum: int, _frame: object) -> None:
            loader.stop()

        previous = signal.signal(signal.SIGTERM, stop)
        if not quiet:
            err_console.print(f"loading {target.display} into {shown} as group {group!r}")

        def report(progress: IngestProgress) -> None:
            err_console.print(summary_line(progress))

        try:
            totals = loader.run(
                until_caught_up=once,
                max_seconds=max_seconds,
                progress=None if quiet else report,
            )
        except KeyboardInterrupt:
            loader.stop()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        opened.close()
    if as_json:
        fields = {
            "consumed": totals.consumed,
            "stored": totals.stored,
            "repeated": totals.repeated,
            "dead_lettered": totals.dead_lettered,
            "commits": totals.commits,
            "seconds": round(totals.seconds, 3),
        }
        out_console.print(orjson.dumps(fields).decode())
    else:
        out_console.print(summary_line(totals))


def register(app: typer.Typer) -> None:
    app.command("ingest", epilog=EXAMPLES)(ingest)
