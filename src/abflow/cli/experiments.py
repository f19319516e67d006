"""``abflow experiments``: register, list and show experiment specs in the store, no gateway.

Registration follows the same rules as ``POST /v1/experiments`` (a new version when the spec
changed, a new phase when its traffic did, the rollout's split kept under a rollout plan),
except the model-reference policy: the API refuses ``file:`` and ``python:`` models because a
caller must never choose the code the gateway runs, while the command line is the operator's
own act, with the operator's own files.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from abflow.cli.console import err_console, fail, out_console
from abflow.cli.options import StoreOption, actor_name

if TYPE_CHECKING:
    from abflow.spec import ExperimentSpec
    from abflow.store.experiments import ExperimentVersion

__all__ = ["did_you_mean", "register"]

experiments_app = typer.Typer(
    name="experiments",
    help="Register, list and show experiment specs in the store, without a gateway.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


class ListFormat(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    ListFormat, typer.Option("--format", "-f", help="table, or json (stable keys).")
]


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the stored keys closest to a mistyped ``key``."""
    close = difflib.get_close_matches(key, sorted(set(known)), n=3, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(k) for k in close)}?)"


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@experiments_app.command("register")
def register_spec(
    file: Annotated[Path, typer.Argument(help="Spec file (.yaml, .yml or .json).")],
    store: StoreOption = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Why, recorded on a phase this opens (default: what changed)."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Who registers, for the audit trail (default: user:$USER)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="ABFLOW_CONFIG",
            help="Gateway config whose backends: options (protocol, columns, example, ...) "
            "the probe of remote model servers uses.",
        ),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe",
            help="Check each models:/ reference in the registry and send one row to each "
            "http(s) model server of the spec first; an unknown model or a server that "
            "refuses the row stops the registration (exit 2).",
        ),
    ] = True,
) -> None:
    """Register a spec file in the store: a new version if it changed, a new phase if its
    traffic did; an unchanged spec writes nothing.

    The rules are the gateway's (POST /v1/experiments), rollout plans included, except
    models: file: and python: references are allowed here, because registering from the
    command line is the operator's own act (the API refuses them to its callers).

    Each http(s) model server of the spec is sent one probe row first, as the gateway does
    on POST /v1/experiments: a refusal exits 2 naming the variant and quoting the server; a
    server that cannot be reached from here is a warning (--no-probe skips the probe).

    Example: [bold]abflow experiments register docs/examples/fraud.yaml[/]
    """
    from abflow.spec import load_experiment
    from abflow.store import EventStore

    spec = load_experiment(file)
    if probe:
        _check_registry(spec)
        _probe(spec, config, str(file))
    with EventStore.open(store) as opened:
        stored = opened.register_experiment(spec, reason=reason, actor=actor_name(actor))
    if not stored.is_new_version:
        out_console.print(f"{stored.key}: unchanged, version {stored.version}")
        return
    phase = f"new phase {stored.phase}" if stored.is_new_phase else f"phase {stored.phase}"
    out_console.print(f"{stored.key}: registered version {stored.version} ({phase})")


def _check_registry(spec: ExperimentSpec) -> None:
    """Each ``models:/`` reference must name a registered version or alias, as the gateway
    requires on POST /v1/experiments (metadata only: nothing is downloaded), when there is a
    registry to ask: a configured one, or the embedded one in this folder. A registry that
    cannot be reached from here is a warning."""
    references = [
        (i, v.model) for i, v in enumerate(spec.variants) if v.model.startswith("models:/")
    ]
    if not references:
        return
    import os

    from abflow.errors import ModelNotFoundError, RegistryError
    from abflow.registry import describe_version
    from abflow.registry.connection import DEFAULT_TRACKING_URI
    from abflow.settings import settings

    configured = settings().mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not configured and not Path(DEFAULT_TRACKING_URI.removeprefix("sqlite:///")).is_file():
        return  # no registry here: opening the embedded one would create it

    for index, reference in references:
        try:
            describe_version(reference)
        except ModelNotFoundError as exc:
            fail(f"variants[{index}].model: {exc}")
        except RegistryError as exc:
            err_console.print(f"warning: variants[{index}].model not checked: {exc}", markup=False)


def _probe(spec: ExperimentSpec, config: Path | None, source: str) -> None:
    if not any(v.model.startswith(("http://", "https://")) for v in spec.variants):
        return
    from abflow.serving.backends.probe import probe_spec
    from abflow.serving.settings import load_config

    options = load_config(config).backends if config is not None else {}
    for warning in probe_spec(spec, options, source=source):
        err_console.print(f"warning: {warning}", markup=False)


def _summary(version: ExperimentVersion) -> dict[str, Any]:
    spec = version.spec
    return {
        "key": version.key,
        "name": spec.name,
        "version": version.version,
        "phase": version.phase,
        "spec_hash": version.spec_hash,
        "registered_at": version.created_at,
        "variants": [v.name for v in spec.variants],
        "has_rollout": spec.rollout is not None,
    }


@experiments_app.command("list")
def list_specs(store: StoreOption = None, output_format: FormatOption = ListFormat.table) -> None:
    """List registered experiments: key, version, current phase, variants, registration time.

    Example: [bold]abflow experiments list --format json[/]
    """
    from rich.table import Table

    from abflow.store import EventStore

    with EventStore.open(store, must_exist=True) as opened:
        versions = opened.list_experiments()
    if output_format is ListFormat.json:
        rows = [_summary(v) for v in versions]
        out_console.print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not versions:
        out_console.print("no experiments registered")
        return
    table = Table()
    for header in ("key", "version", "phase", "variants", "rollout", "registered"):
        table.add_column(header, no_wrap=header in ("key", "registered"))
    for v in versions:
        table.add_row(
            v.key,
            str(v.version),
            str(v.phase),
            ", ".join(x.name for x in v.spec.variants),
            "yes" if v.spec.rollout is not None else "no",
            _when(v.created_at),
        )
    out_console.print(table)


@experiments_app.command("show")
def show_spec(
    key: Annotated[str, typer.Argument(help="Experiment key.")],
    store: StoreOption = None,
    output_format: FormatOption = ListFormat.table,
) -> None:
    """Show an experiment's newest spec, its version and every phase.

    Example: [bold]abflow experiments show fraud-model-v2[/]
    """
    import yaml
    from rich.table import Table

    from abflow.errors import ExperimentNotFoundError
    from abflow.spec import shown_spec
    from abflow.store import EventStore

    with EventStore.open(store, must_exist=True) as opened:
        try:
            version = opened.get_experiment(key)
        except ExperimentNotFoundError:
            hint = did_you_mean(key, (v.key for v in opened.list_experiments()))
            msg = f"no experiment {key!r} in the store{hint}"
            raise ExperimentNotFoundError(msg) from None
        phases = opened.phases(key)
    spec_data = shown_spec(version.spec)
    if output_format is ListFormat.json:
        data = {
            **_summary(version),
            "spec": spec_data,
            "phases": [
                {
                    "phase": p.phase,
                    "spec_version": p.spec_version,
                    "weights": list(p.weights),
                    "coverage": p.coverage,
                    "started_at": p.started_at,
                    "ended_at": p.ended_at,
                    "reason": p.reason,
                }
                for p in phases
            ],
        }
        out_console.print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    out_console.print(
        f"{version.key}: version {version.version}, registered {_when(version.created_at)}, "
        f"sha256:{version.spec_hash[:12]}"
    )
    table = Table(title="phases")
    for header in ("phase", "spec version", "weights", "coverage", "started", "ended", "reason"):
        table.add_column(header)
    for p in phases:
        table.add_row(
            str(p.phase),
            str(p.spec_version),
            " / ".join(f"{w:.0%}" for w in p.weights),
            f"{p.coverage:.0%}",
            _when(p.started_at),
            _when(p.ended_at) if p.ended_at is not None else "open",
            p.reason,
        )
    out_console.print(table)
    out_console.print(yaml.safe_dump(spec_data, sort_keys=False).rstrip())


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app)
