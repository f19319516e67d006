"""``abflow serve``: run the prediction gateway with uvicorn (uvloop + httptools).

Options become ``ABFLOW_*`` environment variables before uvicorn starts, so that every
worker process builds the same settings with ``create_app()`` (the app factory reads them
once). On a first start with no tokens, an admin and a service token are created and printed
once, as Jupyter prints its token. SIGTERM or Ctrl-C stops accepting connections, lets
in-flight requests finish (``--drain-seconds``), then flushes the event log into the store.
Workers get ``--worker-start-timeout`` seconds (default 30, not uvicorn's 5) to answer
uvicorn's health check before they are restarted. With more than one worker, the workers
share their Prometheus metrics through a fresh private directory
(``PROMETHEUS_MULTIPROC_DIR``), so that ``/metrics`` shows the sum of all of them; it is
removed when the gateway stops.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, TextIO

import typer

from abflow.cli.console import err_console, fail
from abflow.cli.options import StoreOption

__all__ = ["register"]

METRICS_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", help="TCP port.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Gateway config (YAML/JSON): experiments, backends, store, tokens. "
            "Default: a demo experiment on two bundled models.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    store: StoreOption = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Processes.")] = None,
    worker_start_timeout: Annotated[
        int | None,
        typer.Option(
            "--worker-start-timeout",
            min=1,
            help="Seconds a worker may take to answer uvicorn's health check, while it starts "
            "and after, before it is restarted (default 30).",
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Accept requests without tokens (local only).")
    ] = False,
    drain_seconds: Annotated[
        float, typer.Option("--drain-seconds", help="Grace period for in-flight requests.")
    ] = 10.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help=f"uvicorn log level: {', '.join(LOG_LEVELS)}.")
    ] = "info",
) -> None:
    """Serve predictions: routing, models, durable event logging, metrics.

    Example: [bold]abflow serve --port 8000 --config gateway.yaml[/]  then open
    http://127.0.0.1:8000/docs
    """
    given: dict[str, tuple[str, object]] = {  # setting -> (the option that sets it, value)
        "ABFLOW_HOST": ("--host", host),
        "ABFLOW_PORT": ("--port", port),
        "ABFLOW_CONFIG": ("--config", str(config.resolve()) if config else None),
        "ABFLOW_STORE_URL": ("--store", store),
        "ABFLOW_WORKERS": ("--workers", workers),
        "ABFLOW_WORKER_START_TIMEOUT_SECONDS": ("--worker-start-timeout", worker_start_timeout),
        "ABFLOW_AUTH_ENABLED": ("--no-auth", "false" if no_auth else None),
        "ABFLOW_DRAIN_TIMEOUT_SECONDS": ("--drain-seconds", drain_seconds),
    }
    for name, (_, value) in given.items():
        if value is not None:
            os.environ[name] = str(value)

    if log_level.lower() not in LOG_LEVELS:
        fail(f"--log-level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")

    import uvicorn
    from pydantic import ValidationError

    from abflow.serving.settings import GatewaySettings, load_config

    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        variable = f"ABFLOW_{field.upper()}"
        source = f"{given[variable][0]} or {variable}" if variable in given else variable
        fail(f"{field}: {first['msg']} (from {source})")
    store_url = settings.store_url
    if store_url is None and settings.config is not None:
        store_url = load_config(settings.config).store_url
        if store_url is not None:
            os.environ["ABFLOW_STORE_URL"] = store_url
    if settings.auth_enabled:
        _first_start_tokens(store_url, settings.config)
    if settings.events_url is not None:
        _check_kafka_settings(settings.events_url)
    scheme_host = f"http://{settings.host}:{settings.port}"
    err_console.print(f"abflow gateway on {scheme_host} (API docs: {scheme_host}/docs)")
    # before uvicorn spawns the workers, which read it when they import prometheus_client
    metrics_dir = _share_metrics_between_workers(settings.workers)
    # Only now: the protocol imports prometheus_client, which reads that variable once.
    from abflow.serving.gateway_protocol import GatewayProtocol

    try:
        uvicorn.run(
            "abflow.serving.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http=GatewayProtocol,  # httptools: request head bounded, predictions without ASGI
            ws="none",
            lifespan="on",
            log_level=log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=int(max(1.0, drain_seconds)),
            # uvicorn kills a worker that does not answer within this; its 5 s default is less
            # than a worker's start on a busy machine (a restart storm: docs/gateway.md)
            timeout_worker_healthcheck=settings.worker_start_timeout_seconds,
        )
    finally:
        if metrics_dir is not None:
            os.environ.pop(METRICS_DIR_VAR, None)  # this process goes on without it
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _check_kafka_settings(url: str) -> None:
    """A librdkafka setting in ``ABFLOW_EVENTS_URL`` that it refuses, as one sentence here
    rather than a traceback from every worker's start."""
    from abflow.errors import AbflowError
    from abflow.events.kafka import KafkaEventWriter

    writer = KafkaEventWriter.from_url(url)
    try:
        writer.check_settings()
    except AbflowError as exc:
        fail(f"events_url: {exc} (from ABFLOW_EVENTS_URL)")
    finally:
        writer.close(timeout_seconds=0.0)


def _share_metrics_between_workers(workers: int) -> Path | None:
    """Prometheus multiprocess mode for more than one worker: a fresh private directory.

    prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when first imported, so it is
    set here, before uvicorn spawns the workers (and without importing prometheus_client in
    this process). For one worker the variable is removed, so that a stale directory left in
    the environment never feeds old files into a single process. The caller removes the
    returned directory.
    """
    os.environ.pop(METRICS_DIR_VAR, None)
    if workers <= 1:
        return None
    path = Path(tempfile.mkdtemp(prefix="abflow-metrics-"))  # mode 0700, empty
    os.environ[METRICS_DIR_VAR] = str(path)
    return path


def _first_start_tokens(store_url: str | None, config: Path | None) -> None:
    """With no token anywhere, create an admin and a service token and show them once: on
    the terminal, or, when stderr goes to a log (a container's, a file), in a file only this
    user can read, since a log is no place for a credential."""
    from abflow.security.roles import Role
    from abflow.security.tokens import create_token
    from abflow.serving.settings import load_config
    from abflow.serving.wiring import StoreTokenStore
    from abflow.store import EventStore

    if config is not None and load_config(config).tokens:
        return
    with EventStore.open(store_url) as opened:
        tokens = StoreTokenStore(opened)
        if tokens.has_tokens():
            return
        private: TextIO | None = None
        if not sys.stderr.isatty():
            try:
                private = _open_private(Path(FIRST_TOKENS_FILE))
            except OSError as exc:
                err_console.print(
                    f"First start: no token exists, and none was created: cannot write "
                    f"{FIRST_TOKENS_FILE} ({exc.strerror or exc}). Create one with: abflow "
                    "token create --role admin --name NAME"
                )
                return
        made = [
            create_token(tokens, f"first-{role.value}", role) for role in (Role.ADMIN, Role.SERVICE)
        ]
    lines = [f"    {record.role.value:<8} {token}" for token, record in made]
    if private is None:
        err_console.print(
            "First start: created these tokens. They are shown once; only their hashes are stored."
        )
        for line in lines:
            err_console.print(line, markup=False)
    else:
        with private:
            private.write("\n".join(lines) + "\n")
        err_console.print(
            f"First start: created an admin and a service token and wrote them to "
            f"{Path(FIRST_TOKENS_FILE).resolve()}, readable by this user only (keep them somewhere "
            "safe, then delete the file); only their hashes are stored."
        )
    err_console.print("Create more with: abflow token create --role ROLE --name NAME")


FIRST_TOKENS_FILE = ".abflow/first-start-tokens"
"""Where a first start whose stderr is not a terminal writes its tokens (mode 0600)."""


def _open_private(path: Path) -> TextIO:
    """A new file at ``path`` that only its owner can read, open for writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command()(serve)
