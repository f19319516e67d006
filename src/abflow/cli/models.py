"""``abflow models``: list, register, promote, verify, pin, find stale and retire versions.

The registry (MLflow) is imported inside each command, so ``abflow --help`` stays fast.
Every alias move and retirement is recorded as a run in the MLflow experiment
``abflow/registry``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from abflow.cli.console import ExitCode, err_console, fail, out_console

if TYPE_CHECKING:
    from abflow.spec import ExperimentSpec

__all__ = ["register"]

models_app = typer.Typer(
    name="models",
    help=(
        "Model registry (MLflow): list, register, promote, verify, pin, stale, retire.\n\n"
        "Uses --tracking-uri, else $ABFLOW_MLFLOW_TRACKING_URI or $MLFLOW_TRACKING_URI, else "
        "the embedded sqlite:///.abflow/mlflow.db."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)

TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI; default $ABFLOW_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI, "
        "else sqlite:///.abflow/mlflow.db.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _json(data: Any) -> None:
    out_console.print_json(orjson.dumps(data, default=str).decode())


@models_app.command("list")
def list_command(
    name: Annotated[
        str | None, typer.Argument(help="Show this model's versions.", show_default=False)
    ] = None,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """List registered models with their aliases, or one model's versions.

    Examples: [bold]abflow models list[/] · [bold]abflow models list fraud --json[/]
    """
    from rich.table import Table

    from abflow.registry import CHECKSUM_TAG, list_models, list_versions
    from abflow.registry.retire import RETIRED_TAG

    if name is None:
        models = list_models(tracking_uri=tracking_uri)
        if as_json:
            _json([_model_row(m) for m in models])
            return
        table = Table("model", "latest", "aliases", "updated (UTC)")
        for model in models:
            aliases = ", ".join(f"{a}→{v}" for a, v in sorted(model.aliases.items()))
            table.add_row(
                model.name,
                model.latest_version or "-",
                aliases,
                f"{model.updated_at:%Y-%m-%d %H:%M}",
            )
        out_console.print(table if models else "no registered models")
        return
    versions = list_versions(name, tracking_uri=tracking_uri)
    if as_json:
        _json([_version_row(v) for v in versions])
        return
    table = Table("version", "aliases", "created (UTC)", "sha256", "status")
    for version in versions:
        table.add_row(
            version.version,
            ", ".join(version.aliases),
            f"{version.created_at:%Y-%m-%d %H:%M}",
            version.tags.get(CHECKSUM_TAG, "-")[:12],
            "retired" if version.tags.get(RETIRED_TAG) == "true" else "",
        )
    out_console.print(table)


def _model_row(model: Any) -> dict[str, Any]:
    return {
        "name": model.name,
        "latest_version": model.latest_version,
        "aliases": model.aliases,
        "created_at": model.created_at.isoformat(),
        "updated_at": model.updated_at.isoformat(),
        "description": model.description,
    }


def _version_row(version: Any) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "aliases": list(version.aliases),
        "created_at": version.created_at.isoformat(),
        "source": version.source,
        "run_id": version.run_id,
        "tags": version.tags,
    }


@models_app.command("register")
def register_command(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. fraud.")],
    model: Annotated[
        str,
        typer.Argument(
            help="An MLflow model folder, a .joblib/.pkl scikit-learn file, or a URI "
            "such as runs:/RUN_ID/model."
        ),
    ],
    alias: Annotated[
        str | None, typer.Option("--alias", "-a", help="Move this alias to the new version.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Version description.")] = None,
    data_as_of: Annotated[
        str | None,
        typer.Option(help="ISO 8601 time of the newest training data (for staleness checks)."),
    ] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Register a new model version and record its artifact checksum.

    Examples: [bold]abflow models register fraud ./model --alias challenger[/] ·
    [bold]abflow models register fraud runs:/3f2a…/model[/]
    """
    from abflow.registry import CHECKSUM_TAG, DATA_AS_OF_TAG, register_model

    target: Any = model
    path = Path(model)
    if path.is_file() and path.suffix in {".joblib", ".pkl", ".pickle"}:
        import joblib

        try:
            target = joblib.load(path)
        except Exception as exc:  # a corrupt pickle raises almost anything: KeyError, EOFError…
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            fail(f"cannot load {model}: it is not a readable .joblib/.pkl file ({reason})")
    elif path.exists() and not path.is_dir():
        fail(f"{model} is neither an MLflow model folder nor a .joblib/.pkl file")
    tags = {DATA_AS_OF_TAG: data_as_of} if data_as_of else None
    info = register_model(
        name,
        target,
        alias=alias,
        description=description,
        tags=tags,
        tracking_uri=tracking_uri,
    )
    suffix = f", alias {alias}" if alias else ""
    out_console.print(
        f"registered {info.reference}{suffix} (sha256 {info.tags.get(CHECKSUM_TAG, '?')[:12]}…)"
    )


@models_app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="The version the alias should point at.")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to move.")] = "champion",
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why; recorded with the move.")
    ] = "",
    tracking_uri: TrackingOption = None,
) -> None:
    """Move an alias (champion by default) to a version; the move is recorded in MLflow.

    Example: [bold]abflow models promote fraud 7 --reason "won fraud-v7 (+3.1% recall)"[/]
    """
    from abflow.registry import set_alias

    change = set_alias(name, alias, version, reason=reason, tracking_uri=tracking_uri)
    before = change.previous_version or "none"
    out_console.print(f"{name}@{alias}: version {before} → {change.version} (recorded)")


@models_app.command("verify")
def verify_command(
    reference: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS.")],
    checksum: Annotated[
        str | None,
        typer.Option(help="Expected SHA-256; default the one recorded at registration."),
    ] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Check that a version's artifacts still match their checksum (exit 1 if not, 2 if unknown).

    Example: [bold]abflow models verify models:/fraud@champion[/]
    """
    from abflow.errors import ArtifactChecksumError
    from abflow.registry import CHECKSUM_TAG, describe_version, verify_checksum
    from abflow.registry.connection import client_for
    from abflow.registry.resolve import local_artifacts

    info = describe_version(reference, tracking_uri=tracking_uri)
    expected = checksum or info.tags.get(CHECKSUM_TAG)
    if not expected:
        fail(f"{reference} has no recorded checksum; pass --checksum")
    client, location = client_for(tracking_uri)
    path = local_artifacts(client.get_model_version_download_uri(info.name, info.version), location)
    try:
        actual = verify_checksum(path, expected, label=info.reference)
    except ArtifactChecksumError as exc:  # the answer "they do not match", not a failure to look
        fail(str(exc), code=ExitCode.NEGATIVE)
    out_console.print(f"{info.reference}: artifacts match sha256 {actual[:12]}…")


@models_app.command("pin")
def pin_command(
    spec_file: Annotated[Path, typer.Argument(help="Experiment spec (.yaml or .json).")],
    record: Annotated[
        bool, typer.Option(help="Record each pin as a tag on its model version.")
    ] = True,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pin an experiment's registry models to exact versions and checksums.

    Prints the gateway config's [bold]backends[/] entries (checksum per reference).
    Example: [bold]abflow models pin experiments/fraud.yaml[/]
    """
    import yaml

    from abflow.registry import pin_experiment_models
    from abflow.spec import load_experiment

    pins = pin_experiment_models(
        load_experiment(spec_file), record=record, tracking_uri=tracking_uri
    )
    if as_json:
        _json(
            [
                {
                    "variant": p.variant,
                    "reference": p.reference,
                    "pinned_reference": p.pinned_reference,
                    "checksum": p.checksum,
                }
                for p in pins
            ]
        )
        return
    if not pins:
        out_console.print("no registry models in this experiment")
        return
    for pin in pins:
        err_console.print(f"{pin.variant}: {pin.reference} is {pin.pinned_reference}")
    backends = {p.reference: {"version": p.version, "checksum": p.checksum} for p in pins}
    out_console.print(yaml.safe_dump({"backends": backends}, sort_keys=False).rstrip())


@models_app.command("stale")
def stale_command(
    max_age_days: Annotated[float, typer.Option(help="Alert when the model is older than this.")],
    max_data_age_days: Annotated[
        float | None, typer.Option(help="Alert when its training data is older than this.")
    ] = None,
    alias: Annotated[str, typer.Option("--alias", "-a", help="Which alias to check.")] = "champion",
    retrain_hook: Annotated[
        str | None,
        typer.Option(help="Command or http(s) webhook URL to call for each stale model."),
    ] = None,
    tracking_uri: TrackingOption = None,
    as_json: JsonOption = False,
) -> None:
    """List models whose alias points at a stale version; exit 1 if any (for cron/CI alerts).

    Example: [bold]abflow models stale --max-age-days 30 --retrain-hook https://ci/hooks/retrain[/]
    """
    from abflow.registry import retrain_hook as make_hook
    from abflow.registry import stale_models, trigger_retrain

    data_limit = timedelta(days=max_data_age_days) if max_data_age_days is not None else None
    stale = stale_models(
        timedelta(days=max_age_days),
        alias=alias,
        max_data_age=data_limit,
        tracking_uri=tracking_uri,
    )
    results = trigger_retrain(stale, make_hook(retrain_hook)) if retrain_hook and stale else []
    if as_json:
        _json(
            {
                "stale": [s.payload() for s in stale],
                "retrain": [{"name": r.name, "version": r.version, "ok": r.ok} for r in results],
            }
        )
    else:
        for model in stale:
            out_console.print(
                f"stale: {model.age.name}@{alias} v{model.age.version}: {'; '.join(model.reasons)}"
            )
        for result in results:
            state = "requested" if result.ok else "FAILED"
            err_console.print(f"retrain {result.name} v{result.version}: {state} ({result.detail})")
        if not stale:
            out_console.print(f"no stale models behind alias {alias!r}")
    if stale:
        raise typer.Exit(ExitCode.NEGATIVE)


@models_app.command("retire")
def retire_command(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to retire.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; recorded with the version.")],
    experiment: Annotated[
        list[Path] | None,
        typer.Option("--experiment", "-e", help="Experiment spec files to take it out of."),
    ] = None,
    write: Annotated[
        bool, typer.Option(help="Rewrite the spec files with the retired variant at weight 0.")
    ] = False,
    tracking_uri: TrackingOption = None,
) -> None:
    """Retire a version: archive its aliases, record why, and fix experiments that serve it.

    Exit 1 when it is retired but a control still serves it (a person must choose another).

    Example: [bold]abflow models retire fraud 3 -r "label leak" -e experiments/fraud.yaml --write[/]
    """
    from abflow.cli.spec_files import rewrite_spec_file
    from abflow.registry import retire_model
    from abflow.spec import load_experiment

    paths = list(experiment or [])
    specs = [load_experiment(p) for p in paths]
    record = retire_model(
        name, version, reason=reason, experiments=specs, tracking_uri=tracking_uri
    )
    archived = ", ".join(f"{a}→{b}" for a, b in record.archived_aliases.items()) or "none"
    out_console.print(f"retired models:/{name}/{record.version} (aliases archived: {archived})")
    final: dict[str, ExperimentSpec] = {}
    for change in record.changes:
        out_console.print(
            f"  {change.experiment_key}/{change.variant} ({change.reference}): {change.note}"
        )
        if change.updated_spec is not None:
            final[change.experiment_key] = change.updated_spec
    if record.needs_manual_change:
        if write:
            err_console.print("spec files left as they were: finish the control change first")
        msg = "a control serves this version: choose a new control for the experiments above"
        fail(msg, code=ExitCode.NEGATIVE)  # retired, but a person must finish the job
    if write:
        for path, spec in zip(paths, specs, strict=True):
            if spec.key in final:
                fields = rewrite_spec_file(path, final[spec.key])
                out_console.print(f"  wrote {path} ({', '.join(fields)}; comments kept)")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app)
