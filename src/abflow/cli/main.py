"""Entry point of the ``abflow`` command: builds the Typer app from one module per command."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from functools import cache
from typing import Annotated, Any, NoReturn

import typer

from abflow.cli.console import (
    ExitCode,
    err_console,
    fail,
    fit_width,
    policy_code,
    report_failure,
)


def _new_app() -> typer.Typer:
    """The root app, no commands yet: ``build_app`` adds all, ``main`` only the one called."""
    app = typer.Typer(
        name="abflow",
        help=(
            "A/B testing and progressive delivery for ML models.\n\n"
            "Route traffic between model versions, serve and log predictions, analyse experiments "
            "with trustworthy statistics, and promote or roll back with an audit trail.\n\n"
            "Exit codes: 0 ok, 1 a negative answer (drift found, gate failed, rolled back, audit "
            "broken, spec invalid), 2 could not answer (docs/cli.md)."
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    app.callback()(_root)
    return app


def _print_version(value: bool) -> None:
    """``--version``: print abflow's version and exit, before any command is looked up."""
    if value:
        from abflow import __version__

        typer.echo(f"abflow {__version__}")
        raise typer.Exit(ExitCode.OK)


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print abflow's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """A/B testing and progressive delivery for ML models."""
    fit_width()


_app = _new_app()


COMMAND_MODULES = (
    "validate",
    "experiments",
    "db",
    "audit",
    "power",
    "assign",
    "serve",
    "token",
    "analyze",
    "demo",
    "models",
    "drift",
    "monitor",
    "gate",
    "rollout",
    "k8s",
    "ingest",
)
"""Modules under ``abflow.cli``, one per command, registered in this order (``--help``'s)."""


READ_ONLY_COMMANDS: dict[str, frozenset[str] | None] = {
    "analyze": None,
    "gate": None,
    "rollout": frozenset({"status"}),
    "audit": frozenset({"verify", "log"}),
    "experiments": frozenset({"list", "show"}),
    "token": frozenset({"list"}),
}
"""Commands that only read the store (None: the command itself; else these subcommands).

They must never create one: opening a missing SQLite file creates it, so ``abflow analyze``
in the wrong directory left an empty ``.abflow/abflow.db`` behind and blamed its schema."""

KEYED_COMMANDS: dict[str, frozenset[str] | None] = {
    "analyze": None,
    "gate": None,
    "rollout": frozenset({"status", "tick", "promote", "rollback", "reset"}),
}
"""Commands whose ``experiment`` argument must name a registered experiment: a key that
does not is refused before the command runs, with the stored keys closest to it."""


def _check_store_and_key(kwargs: dict[str, Any], *, read_only: bool, keyed: bool) -> None:
    """Refuse a missing store (read-only commands) and an unknown experiment key."""
    from abflow.store.engine import require_existing_store

    store = kwargs.get("store")
    key = kwargs.get("experiment")
    if not keyed or not isinstance(key, str) or kwargs.get("spec_file") is not None:
        if read_only:
            require_existing_store(store)
        return
    # A registered experiment lives in a store that exists: a mistyped path is refused,
    # not created (a tick there left an empty store behind).
    require_existing_store(store)
    from abflow.store.clickhouse import is_clickhouse_url
    from abflow.store.engine import resolve_url

    if is_clickhouse_url(resolve_url(store)):
        return  # a warehouse holds no catalogue to open: the analysis names an unknown key
    from abflow.cli.experiments import did_you_mean
    from abflow.errors import ExperimentNotFoundError
    from abflow.store import EventStore

    with EventStore.open(store, must_exist=True) as opened:
        known = [version.key for version in opened.list_experiments()]
    if key not in known:
        alternative = " (or pass --spec FILE)" if "spec_file" in kwargs else ""
        msg = (
            f"no experiment {key!r} in the store{did_you_mean(key, known)}; register its spec "
            f"with `abflow experiments register FILE`{alternative}"
        )
        raise ExperimentNotFoundError(msg)


def _guarded(callback: Callable[..., Any], *, read_only: bool, keyed: bool) -> Callable[..., Any]:
    """``callback``, first running :func:`_check_store_and_key` on its arguments."""
    if getattr(callback, "_abflow_guarded", False):
        return callback

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from abflow.errors import AbflowError

        try:
            _check_store_and_key(kwargs, read_only=read_only, keyed=keyed)
        except AbflowError as exc:  # as report_failure would, also for an app run directly
            fail(str(exc))
        return callback(*args, **kwargs)

    guarded._abflow_guarded = True  # type: ignore[attr-defined]
    return guarded


def _listed(table: dict[str, frozenset[str] | None], name: str, sub: str | None) -> bool:
    if name not in table:
        return False
    subcommands = table[name]
    return subcommands is None if sub is None else subcommands is not None and sub in subcommands


def _guard(app: typer.Typer, name: str) -> None:
    """Wrap module ``name``'s commands in ``app`` listed in READ_ONLY or KEYED_COMMANDS."""

    def wrap(info: Any, sub: str | None) -> None:
        read_only = _listed(READ_ONLY_COMMANDS, name, sub)
        keyed = _listed(KEYED_COMMANDS, name, sub)
        if info.callback is not None and (read_only or keyed):
            info.callback = _guarded(info.callback, read_only=read_only, keyed=keyed)

    for info in app.registered_commands:
        if info.callback is not None and (info.name or info.callback.__name__) == name:
            wrap(info, None)
    for group in app.registered_groups:
        instance = group.typer_instance
        if instance is not None and (group.name or instance.info.name) == name:
            for info in instance.registered_commands:
                wrap(info, info.name)


def _register(app: typer.Typer, name: str) -> None:
    """Add command module ``name`` to ``app``, its read-only and keyed commands guarded."""
    importlib.import_module(f"abflow.cli.{name}").register(app)
    _guard(app, name)


@cache
def build_app() -> typer.Typer:
    """The app with every command registered; the command modules are imported here.

    Not when this module is imported: uvicorn's worker processes import the ``abflow`` entry
    point again (as their ``__main__``) before they can answer their first health check, and
    the commands' own imports (statistics, drift, SQLAlchemy) took seconds there on a busy
    machine, long enough for uvicorn to kill the workers (docs/gateway.md, "Start it").
    """
    for name in COMMAND_MODULES:
        _register(_app, name)
    return _app


def __getattr__(name: str) -> typer.Typer:
    """``app``: the Typer app with every command (built on first use, see build_app)."""
    if name == "app":
        return build_app()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


ROOT_HELP: dict[str, tuple[bool, str]] = {
    "validate": (
        False,
        "Check experiment specs; print every problem with its path and exit 1 if any\n"
        "(2 if a file cannot be read).",
    ),
    "experiments": (
        True,
        "Register, list and show experiment specs in the store, without a gateway.",
    ),
    "db": (True, "Manage the event store's schema."),
    "audit": (
        True,
        "Read and verify the hash-chained audit trail: experiment versions, rollouts, tokens.",
    ),
    "power": (False, "Sample size, minimum detectable effect or power of an A/B test."),
    "assign": (
        False,
        "Show which variant a unit gets, and why; or assign a whole file of units.",
    ),
    "serve": (False, "Serve predictions: routing, models, durable event logging, metrics."),
    "token": (True, "Create and revoke API tokens for the gateway."),
    "analyze": (
        False,
        "Analyse one phase of an experiment: metrics, SRM, guardrails, progress and a verdict.",
    ),
    "demo": (
        False,
        "Train two fraud models, serve a simulated week through the gateway, analyse, decide.",
    ),
    "models": (
        True,
        "Model registry (MLflow): list, register, promote, verify, pin, stale, retire.",
    ),
    "drift": (
        False,
        "Per-feature drift between two samples, or feature skew between variants (--by).",
    ),
    "monitor": (
        False,
        "Feature drift, prediction drift, skew between variants and quality, per window.",
    ),
    "gate": (
        False,
        "Pass (exit 0) or fail (exit 1) a deploy on an experiment's latest analysis (2: cannot).",
    ),
    "rollout": (
        True,
        "Progressive delivery: status, tick (the controller), promote, rollback, reset.",
    ),
    "k8s": (True, "Kubernetes manifests for the gateway and the rollout controller."),
    "ingest": (
        False,
        "Load events from Kafka into the store: idempotent group commits, offsets committed\n"
        "only after the store committed, so a crash loses and doubles nothing.",
    ),
}
"""Per command: whether it is a group, and its help's first paragraph, for the root ``--help``.

That page lists every command, and importing them all took 1.5 s of CPU (statistics, drift,
the gateway); a test checks this table against the commands' own help, word for word."""


def _root_help_app() -> typer.Typer:
    """An app that prints the same root ``--help`` as the real one, importing no command."""
    app = _new_app()

    def stub() -> None:  # pragma: no cover - never invoked: only --help reaches this app
        """Listed, never run."""

    for name in COMMAND_MODULES:
        is_group, text = ROOT_HELP[name]
        if is_group:
            app.add_typer(typer.Typer(), name=name, help=text)
        else:
            app.command(name, help=text)(stub)
    return app


def _app_for(argv: Sequence[str]) -> typer.Typer:
    """Only the command called (``abflow models list`` imports no statistics, drift or
    gateway); every command for the root ``--help``, or a name that needs "no such command"."""
    # A command not in ROOT_HELP yet is listed by the real app: slower, never wrong.
    if list(argv) in ([], ["--help"], ["--version"]) and set(COMMAND_MODULES) <= ROOT_HELP.keys():
        return _root_help_app()
    if argv and argv[0] in COMMAND_MODULES:
        app = _new_app()
        _register(app, argv[0])
        return app
    return build_app()


def main(args: Sequence[str] | None = None) -> NoReturn:
    """Run the CLI and exit by the policy in docs/cli.md: 0 ok, 1 a negative answer, 2 not.

    Commands exit 1 themselves, only for a negative answer; usage errors are Click's 2; any
    error that escapes a command is one sentence (traceback with ABFLOW_DEBUG=1) and 2.
    """
    argv = list(sys.argv[1:] if args is None else args)
    try:
        _app_for(argv)(args=argv, prog_name="abflow")
    except SystemExit as exc:  # a library's own code (uvicorn's 3) is not ours to pass on
        sys.exit(policy_code(exc.code))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        sys.exit(report_failure(exc))
    sys.exit(ExitCode.OK)  # pragma: no cover - Click exits by itself in standalone mode


if __name__ == "__main__":  # pragma: no cover
    main()
