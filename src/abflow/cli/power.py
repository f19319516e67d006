"""``abflow power``: plan an experiment before it starts.

Give an effect to get the sample each variant needs (and the days, with ``--daily-units``);
give a sample to get the smallest detectable effect; give both to get the achieved power.
"""

from __future__ import annotations

import dataclasses
import math
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from abflow.cli.console import fail, out_console
from abflow.errors import InvalidArgumentError
from abflow.stats.power import (
    MAX_UNITS_PER_VARIANT,
    MAX_VARIANTS,
    MdeResult,
    PowerResult,
    SampleSizeResult,
    mde,
    power,
    sample_size,
)

__all__ = ["power_command", "register"]

EXAMPLES = """
Examples:

  [bold]abflow power --baseline 0.10 --mde 0.05[/]
    conversion 10 %, detect +5 % relative: units per variant and in total

  [bold]abflow power --baseline 0.10 --mde 0.005 --absolute --daily-units 20000[/]
    detect +0.5 points, and how many days 20 000 eligible units a day take

  [bold]abflow power --mean 42.0 --std 30.0 --mde 0.02 --variants 3 --weights 0.5,0.25,0.25[/]
    a mean metric, two challengers on a quarter of the traffic each

  [bold]abflow power --baseline 0.10 --sample-size 50000[/]
    the smallest effect 50 000 units per variant detect

  [bold]abflow power --baseline 0.10 --mde 0.05 --sample-size 30000,30000 --format json[/]
    the power a given split achieves, as JSON

Exit codes: 0 done, 2 invalid arguments.
"""


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


class VarianceFormula(StrEnum):
    unpooled = "unpooled"
    pooled = "pooled"
    arcsine = "arcsine"


def _numbers(text: str, name: str, kind: type[float] | type[int]) -> list[Any]:
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        msg = f"{name} must be a comma-separated list of {what}, got {text!r}"
        raise InvalidArgumentError(msg) from None


def _payload(mode: str, result: SampleSizeResult | MdeResult | PowerResult) -> dict[str, Any]:
    metric = "proportion" if result.std is None else "mean"
    return {"mode": mode, "metric": metric, **dataclasses.asdict(result)}


def _percent(value: float, sign: str = "") -> str:
    return f"{value * 100:{sign}.4g}%"


def _effect_text(value: float, relative: bool) -> str:
    return _percent(value, "+") if relative else f"{value:+.6g}"


def _table(payload: dict[str, Any]) -> Table:
    titles = {
        "sample_size": "Sample size",
        "mde": "Minimum detectable effect",
        "power": "Achieved power",
    }
    table = Table(title=titles[payload["mode"]], show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    relative = payload["relative"]
    if payload["metric"] == "proportion":
        table.add_row("baseline rate", _percent(payload["baseline"]))
        table.add_row("variance", payload["proportion_variance"])
    else:
        table.add_row("baseline mean", f"{payload['baseline']:.6g}")
        table.add_row("standard deviation", f"{payload['std']:.6g}")
    table.add_row(
        f"mde ({'relative' if relative else 'absolute'})", _effect_text(payload["mde"], relative)
    )
    if payload["mode"] == "mde":
        table.add_row("treatment value", f"{payload['treatment_mean']:.6g}")
    alpha = f"{payload['alpha']:g} {payload['alternative']}"
    if payload["variants"] > 2:
        alpha += f" (Bonferroni: {payload['adjusted_alpha']:.4g} per comparison)"
    table.add_row("alpha", alpha)
    if payload["mode"] == "power":
        table.add_row("achieved power", f"{payload['power']:.2%}")
        if payload["variants"] > 2:
            each = ", ".join(f"{p:.2%}" for p in payload["per_comparison"])
            table.add_row("power per treatment", each)
    else:
        table.add_row("target power", _percent(payload["power"]))
    if payload["mode"] == "sample_size":
        table.add_row("achieved power", f"{payload['achieved_power']:.2%}")
    for i, n in enumerate(payload["per_variant"]):
        name = "control" if i == 0 else f"treatment {i}" if payload["variants"] > 2 else "treatment"
        share = f" ({payload['weights'][i]:.0%})" if payload["mode"] == "sample_size" else ""
        table.add_row(f"units: {name}{share}", f"{n:,}")
    table.add_row("units: total", f"{payload['total']:,}")
    if payload.get("duration_days") is not None:
        table.add_row("duration", f"{payload['duration_days']:,} days")
    return table


def power_command(
    baseline: Annotated[
        float | None, typer.Option(help="Control conversion rate, for a proportion metric.")
    ] = None,
    mean: Annotated[
        float | None, typer.Option(help="Control mean, for a continuous metric.")
    ] = None,
    std: Annotated[
        float | None, typer.Option(help="Standard deviation per unit (with --mean).")
    ] = None,
    mde_value: Annotated[
        float | None,
        typer.Option("--mde", help="Effect to detect: 0.05 is +5 % with --relative."),
    ] = None,
    relative: Annotated[
        bool, typer.Option("--relative/--absolute", help="Read --mde as a relative lift.")
    ] = True,
    sample_size_text: Annotated[
        str | None,
        typer.Option(
            "--sample-size",
            help="Units per variant (one number, or one per variant: 30000,10000). "
            "Without --mde: solve for the MDE; with it: the achieved power.",
        ),
    ] = None,
    variants: Annotated[
        int, typer.Option(help=f"Variants including control (at most {MAX_VARIANTS}).")
    ] = 2,
    weights: Annotated[
        str | None,
        typer.Option(help="Traffic split, control first: 0.5,0.25,0.25 (default equal)."),
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-positive rate of the whole test.")] = 0.05,
    power_target: Annotated[float, typer.Option("--power", help="Target power.")] = 0.8,
    one_sided: Annotated[
        bool, typer.Option("--one-sided", help="Test for an increase only.")
    ] = False,
    variance: Annotated[
        VarianceFormula | None,
        typer.Option(
            help="Proportions: standard error formula (unpooled, pooled or arcsine).",
            show_default="unpooled",
        ),
    ] = None,
    daily_units: Annotated[
        float | None, typer.Option(help="Eligible units a day, to estimate the duration.")
    ] = None,
    coverage: Annotated[
        float, typer.Option(help="Share of eligible units in the experiment, in (0, 1].")
    ] = 1.0,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table, or json (stable keys).")
    ] = OutputFormat.table,
) -> None:
    """Sample size, minimum detectable effect or power of an A/B test."""
    try:
        payload = _solve(
            baseline=baseline,
            mean=mean,
            std=std,
            mde_value=mde_value,
            relative=relative,
            sample_size_text=sample_size_text,
            variants=variants,
            weights=weights,
            alpha=alpha,
            power_target=power_target,
            alternative="one-sided" if one_sided else "two-sided",
            variance=None if variance is None else variance.value,
            daily_units=daily_units,
            coverage=coverage,
        )
    except InvalidArgumentError as exc:
        fail(str(exc))
    if output is OutputFormat.json:
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        out_console.print(_table(payload))


def _solve(
    *,
    baseline: float | None,
    mean: float | None,
    std: float | None,
    mde_value: float | None,
    relative: bool,
    sample_size_text: str | None,
    variants: int,
    weights: str | None,
    alpha: float,
    power_target: float,
    alternative: Any,
    variance: Any,
    daily_units: float | None,
    coverage: float,
) -> dict[str, Any]:
    if (baseline is None) == (mean is None):
        msg = "give --baseline (a proportion) or --mean with --std (a continuous metric)"
        raise InvalidArgumentError(msg)
    if mean is not None and std is None:
        msg = "--mean needs --std, the standard deviation per unit"
        raise InvalidArgumentError(msg)
    if baseline is not None and std is not None:
        msg = "--std applies to --mean; a proportion's variance follows from --baseline"
        raise InvalidArgumentError(msg)
    if mean is not None and variance is not None:
        msg = "--variance applies to --baseline (a proportion); a mean's comes from --std"
        raise InvalidArgumentError(msg)
    variance = variance or VarianceFormula.unpooled.value
    # Checked here whatever the mode: power mode ignores them, but a bad value is still a typo.
    if not (math.isfinite(coverage) and 0 < coverage <= 1):
        msg = f"--coverage must be in (0, 1], got {coverage!r}"
        raise InvalidArgumentError(msg)
    level = float(baseline if baseline is not None else mean)  # type: ignore[arg-type]
    common: dict[str, Any] = {
        "std": std,
        "relative": relative,
        "alpha": alpha,
        "variants": variants,
        "alternative": alternative,
        "proportion_variance": variance,
    }
    if sample_size_text is None:
        if mde_value is None:
            msg = "give --mde to get a sample size, or --sample-size to get the MDE"
            raise InvalidArgumentError(msg)
        split = None if weights is None else _numbers(weights, "--weights", float)
        result = sample_size(
            level,
            mde_value,
            power=power_target,
            weights=split,
            daily_units=daily_units,
            coverage=coverage,
            **common,
        )
        return _payload("sample_size", result)
    if weights is not None:
        msg = "--weights applies when solving for a sample size; give per-variant --sample-size"
        raise InvalidArgumentError(msg)
    sizes = _numbers(sample_size_text, "--sample-size", int)
    if any(n > MAX_UNITS_PER_VARIANT for n in sizes):
        msg = f"--sample-size must be at most {MAX_UNITS_PER_VARIANT:.0e} units per variant, got {max(sizes)}"
        raise InvalidArgumentError(msg)
    per_variant: int | list[int] = sizes[0] if len(sizes) == 1 else sizes
    if mde_value is None:
        found = mde(
            level,
            per_variant,
            power=power_target,
            daily_units=daily_units,
            coverage=coverage,
            **common,
        )
        return _payload("mde", found)
    achieved = power(level, mde_value, per_variant, **common)
    return _payload("power", achieved)


def register(app: typer.Typer) -> None:
    app.command("power", epilog=EXAMPLES)(power_command)
