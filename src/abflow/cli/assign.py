"""``abflow assign``: which variant a unit sees, or a whole file of units, from a spec file.

The same code as the gateway decides, so this is how to check a spec before it goes live,
answer "why did user 42 see the old model?", or precompute assignments for a backfill.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from abflow.cli.console import err_console, fail, out_console
from abflow.errors import DocumentError, InvalidArgumentError, InvalidSpecError
from abflow.routing import REASONS, Assignment, BatchAssignment, assign, assign_batch
from abflow.settings import read_document
from abflow.spec import ExperimentSpec, load_experiment

_CHUNK = 100_000
_FIELDS = ("unit", "variant", "model", "index", "bucket", "in_experiment", "reason")


def _parse_value(text: str) -> Any:
    """``30`` → 30, ``true`` → True, ``["a"]`` → a list; anything else stays text."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested beyond reading: the text
        return text


def _attribute_needs(spec: ExperimentSpec) -> str:
    """What, besides the unit id, the spec reads from each unit's attributes ('' if nothing)."""
    needs = []
    if spec.condition is not None:
        needs.append("a targeting condition")
    if any(f.attribute not in (None, spec.unit) for f in spec.filters):
        needs.append("a filter on another attribute")
    return " and ".join(needs)


def _parse_attributes(pairs: list[str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--attr takes key=value (for example --attr country=fr), got {pair!r}")
        attributes[key.strip()] = _parse_value(value)
    return attributes


def _row(spec: ExperimentSpec, unit_id: str, result: Assignment) -> dict[str, Any]:
    model = spec.variants[result.index].model if result.index >= 0 else None
    return {
        "unit": unit_id,
        "variant": result.variant,
        "model": model,
        "index": result.index,
        "bucket": result.bucket,
        "in_experiment": result.in_experiment,
        "reason": result.reason,
    }


def _print_one(spec: ExperimentSpec, row: dict[str, Any], output_format: str) -> None:
    if output_format == "json":
        out_console.print_json(orjson.dumps({"experiment": spec.key, **row}).decode())
        return
    table = Table(title=f"experiment {spec.key}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    for field in _FIELDS:
        table.add_row(field, "-" if row[field] is None else str(row[field]))
    out_console.print(table)


def _read_units(path: Path, spec: ExperimentSpec) -> tuple[list[str], list[dict[str, Any]] | None]:
    """Unit ids (and, from a CSV, each row's other columns as attributes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    if path.suffix.lower() != ".csv":
        return [line.strip() for line in text.splitlines() if line.strip()], None
    reader = csv.DictReader(text.splitlines())
    columns = reader.fieldnames or []
    if spec.unit not in columns:
        fail(f"{path} has no column {spec.unit!r} (the spec's unit); columns are {columns}")
    ids: list[str] = []
    attributes: list[dict[str, Any]] = []
    for record in reader:
        ids.append((record.get(spec.unit) or "").strip())
        attributes.append(
            {k: _parse_value(v) for k, v in record.items() if k != spec.unit and v is not None}
        )
    return ids, attributes


def _read_groups(path: Path) -> dict[str, list[Any]]:
    """Saved groups for ``$inGroup`` conditions: YAML or JSON, group id -> list of members."""
    try:
        data = read_document(path)
    except DocumentError as exc:
        fail(f"--groups: {exc}")
    if not isinstance(data, dict) or not all(
        isinstance(key, str) and isinstance(members, list) for key, members in data.items()
    ):
        fail(f"--groups: {str(path)!r} must map each group id to a list of members")
    return data


def _assign_file(
    spec: ExperimentSpec,
    ids: list[str],
    attributes: list[dict[str, Any]] | None,
    groups: dict[str, list[Any]] | None = None,
) -> list[BatchAssignment]:
    parts: list[BatchAssignment] = []
    columns = (
        TextColumn("[bold]assigning[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("assign", total=len(ids))
        for start in range(0, len(ids), _CHUNK):
            chunk_attributes = None if attributes is None else attributes[start : start + _CHUNK]
            chunk = ids[start : start + _CHUNK]
            parts.append(assign_batch(spec, chunk, chunk_attributes, saved_groups=groups))
            progress.advance(task, len(parts[-1]))
    return parts


def _rows(spec: ExperimentSpec, ids: list[str], parts: list[BatchAssignment]) -> list[list[Any]]:
    models = [v.model for v in spec.variants]
    rows: list[list[Any]] = []
    offset = 0
    for part in parts:
        for index, bucket, reason in zip(
            part.index.tolist(), part.bucket.tolist(), part.reason.tolist(), strict=True
        ):
            inside = index >= 0
            rows.append(
                [
                    ids[offset],
                    spec.variant_names[index] if inside else None,
                    models[index] if inside else None,
                    index,
                    None if bucket != bucket else bucket,  # NaN: not hashed
                    inside,
                    REASONS[reason],
                ]
            )
            offset += 1
    return rows


def _write(path: Path, spec: ExperimentSpec, rows: list[list[Any]]) -> None:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(_FIELDS)
                writer.writerows(["" if v is None else v for v in row] for row in rows)
        else:
            records = [dict(zip(_FIELDS, row, strict=True)) for row in rows]
            payload = {"experiment": spec.key, "assignments": records}
            path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")


def _summary(spec: ExperimentSpec, parts: list[BatchAssignment]) -> dict[str, Any]:
    variants: Counter[str] = Counter(dict.fromkeys(spec.variant_names, 0))
    reasons: Counter[str] = Counter()
    for part in parts:
        variants.update(part.counts())
        codes = np.bincount(part.reason, minlength=len(REASONS))
        reasons.update({REASONS[i]: int(n) for i, n in enumerate(codes.tolist()) if n})
    total = sum(len(part) for part in parts)
    return {
        "experiment": spec.key,
        "units": total,
        "variants": dict(variants),
        "reasons": dict(reasons),
    }


def _print_summary(summary: Mapping[str, Any], output_format: str) -> None:
    if output_format == "json":
        out_console.print_json(orjson.dumps(summary).decode())
        return
    total = max(int(summary["units"]), 1)
    table = Table(title=f"experiment {summary['experiment']}: {summary['units']} units")
    table.add_column("variant / reason")
    table.add_column("units", justify="right")
    table.add_column("share", justify="right")
    for name, count in summary["variants"].items():
        table.add_row(name, str(count), f"{count / total:.2%}")
    table.add_section()
    for reason, count in sorted(summary["reasons"].items()):
        table.add_row(Text(reason, style="dim"), str(count), f"{count / total:.2%}")
    out_console.print(table)


def assign_command(
    spec_file: Annotated[
        Path, typer.Argument(metavar="SPEC", help="Experiment spec (.yaml, .yml or .json).")
    ],
    unit: Annotated[
        str | None,
        typer.Option("--unit", "-u", help="Assign this one unit id.", show_default=False),
    ] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option(
            "--attr",
            "-a",
            help="Attribute for the targeting condition, key=value (JSON values: 30, true).",
            show_default=False,
        ),
    ] = None,
    ids: Annotated[
        Path | None,
        typer.Option(
            "--ids",
            help="File of unit ids: one per line, or a .csv with a column named like the "
            "spec's unit (other columns are attributes).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="With --ids: write every assignment to OUT.csv or OUT.json."
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="Printed output: table or json.")
    ] = "table",
    groups_file: Annotated[
        Path | None,
        typer.Option(
            "--groups",
            help="Saved groups for $inGroup / $notInGroup: a YAML or JSON file, group id -> "
            "list of members (as the gateway config's saved_groups).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show which variant a unit gets, and why; or assign a whole file of units.

    One unit:  [bold]abflow assign examples/fraud.yaml --unit user-42 --attr country=fr[/]

    Many:      [bold]abflow assign examples/fraud.yaml --ids users.csv --output out.csv[/]

    The reason says why: forced (the unit's own forced variant), inactive (the experiment
    is paused), no_unit, condition, namespace, filters, coverage, force (the experiment's
    forced variant), sticky, blocked (sticky re-entry refused) or assigned.
    Exit codes: 0 done, 2 the spec, a file or the command line cannot be used.
    """
    if output_format not in ("table", "json"):
        fail(f"--format must be table or json, got {output_format!r}")
    if (unit is None) == (ids is None):
        fail("give exactly one of --unit ID or --ids FILE")
    if output is not None and (ids is None or output.suffix.lower() not in (".csv", ".json")):
        fail("--output needs --ids and a file name ending in .csv or .json")
    try:
        spec = load_experiment(spec_file)
    except InvalidSpecError as exc:
        fail(str(exc))
    groups = _read_groups(groups_file) if groups_file is not None else None

    if unit is not None:
        attributes = {**_parse_attributes(attr or []), spec.unit: unit}
        result = assign(spec, attributes, saved_groups=groups)
        _print_one(spec, _row(spec, unit, result), output_format)
        return

    assert ids is not None
    unit_ids, attributes_list = _read_units(ids, spec)
    if attributes_list is None:
        needs = _attribute_needs(spec)
        if needs:
            fail(
                f"experiment {spec.key!r} has {needs}; give --ids a .csv file whose columns "
                "hold the attributes it reads"
            )
    try:
        parts = _assign_file(spec, unit_ids, attributes_list, groups)
    except InvalidArgumentError as exc:
        fail(str(exc))
    if output is not None:
        _write(output, spec, _rows(spec, unit_ids, parts))
        err_console.print(f"wrote {len(unit_ids)} assignments to {output}")
    _print_summary(_summary(spec, parts), output_format)


def register(app: typer.Typer) -> None:
    app.command(name="assign")(assign_command)
