"""Pinning an experiment's models, and per-variant ages, against a real registry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from abflow.cli.main import app
from abflow.registry import (
    artifact_checksum,
    describe_version,
    pin_experiment_models,
    register_model,
    resolve_model,
    set_alias,
    variant_ages,
)
from abflow.spec import ExperimentSpec, parse_experiment


def _spec() -> ExperimentSpec:
    return parse_experiment(
        {
            "key": "fraud-v9",
            "variants": [
                {"name": "control", "model": "models:/fraud@champion"},
                {"name": "tree", "model": "models:/fraud/2"},
                {"name": "baseline", "model": "file:models/baseline.joblib"},
            ],
        }
    )


def test_pins_are_exact_versions_with_checksums(
    tracking_uri: str, fitted_models: dict[str, Any]
) -> None:
    register_model("fraud", fitted_models["logistic"], alias="champion", tracking_uri=tracking_uri)
    register_model("fraud", fitted_models["tree"], tracking_uri=tracking_uri)
    pins = pin_experiment_models(_spec(), tracking_uri=tracking_uri)
    assert [(p.variant, p.pinned_reference) for p in pins] == [
        ("control", "models:/fraud/1"),
        ("tree", "models:/fraud/2"),
    ]
    for pin in pins:
        resolved = resolve_model(pin.pinned_reference, tracking_uri=tracking_uri)
        assert pin.checksum == artifact_checksum(resolved.artifact_path)
        tags = describe_version(pin.pinned_reference, tracking_uri=tracking_uri).tags
        assert tags["abflow.pinned.fraud-v9"] == pin.checksum
    # The alias moving later does not move the pin.
    set_alias("fraud", "champion", 2, tracking_uri=tracking_uri)
    assert pins[0].pinned_reference == "models:/fraud/1"
    register_model("fraud", fitted_models["logistic"], alias="champion", tracking_uri=tracking_uri)
    dry = pin_experiment_models(_spec(), record=False, tracking_uri=tracking_uri)
    assert dry[0].version == "3"
    tags = describe_version("models:/fraud/3", tracking_uri=tracking_uri).tags
    assert "abflow.pinned.fraud-v9" not in tags


def test_variant_ages(tracking_uri: str, fitted_models: dict[str, Any]) -> None:
    register_model("fraud", fitted_models["logistic"], alias="champion", tracking_uri=tracking_uri)
    register_model("fraud", fitted_models["tree"], tracking_uri=tracking_uri)
    first = describe_version("models:/fraud/1", tracking_uri=tracking_uri).created_at
    now = first + timedelta(days=3)
    ages = variant_ages(_spec(), now=now, tracking_uri=tracking_uri)
    assert set(ages) == {"control", "tree"}
    assert ages["control"].age_seconds == timedelta(days=3).total_seconds()
    assert ages["control"].alias == "champion"
    assert ages["tree"].version == "2"
    assert ages["tree"].age_seconds <= ages["control"].age_seconds


def test_pin_command_prints_gateway_backends(
    tracking_uri: str, fitted_models: dict[str, Any], tmp_path: Path
) -> None:
    register_model("fraud", fitted_models["logistic"], alias="champion", tracking_uri=tracking_uri)
    register_model("fraud", fitted_models["tree"], tracking_uri=tracking_uri)
    spec_file = tmp_path / "fraud.yaml"
    spec_file.write_text(yaml.safe_dump(_spec().model_dump(mode="json", exclude_none=True)))
    result = CliRunner().invoke(
        app, ["models", "pin", str(spec_file), "--tracking-uri", tracking_uri]
    )
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    one = resolve_model("models:/fraud/1", tracking_uri=tracking_uri).checksum
    assert printed["backends"]["models:/fraud@champion"] == {"version": "1", "checksum": one}
    assert set(printed["backends"]) == {"models:/fraud@champion", "models:/fraud/2"}
