"""``abflow models``: register, list, promote, verify, stale and retire through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest
import yaml
from typer.testing import CliRunner, Result

from abflow.cli.main import app, main
from abflow.registry import CHECKSUM_TAG, DATA_AS_OF_TAG, list_versions, resolve_model


def _run(uri: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["models", *args, "--tracking-uri", uri])


@pytest.fixture
def cli_registry(tracking_uri: str, tmp_path: Path, fitted_models: dict[str, Any]) -> str:
    """``fraud`` v1 (champion) and v2 registered through the CLI from joblib files."""
    for i, key in enumerate(("logistic", "tree"), start=1):
        joblib.dump(fitted_models[key], tmp_path / f"m{i}.joblib")
    first = _run(
        tracking_uri,
        "register",
        "fraud",
        str(tmp_path / "m1.joblib"),
        "--alias",
        "champion",
        "--data-as-of",
        "2026-10-01T00:00:00Z",
    )
    assert first.exit_code == 0, first.output
    assert first.output.startswith("registered models:/fraud/1, alias champion (sha256 ")
    second = _run(tracking_uri, "register", "fraud", str(tmp_path / "m2.joblib"))
    assert second.exit_code == 0, second.output
    return tracking_uri


def test_register_and_list(cli_registry: str) -> None:
    listed = _run(cli_registry, "list", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert (row["name"], row["latest_version"], row["aliases"]) == ("fraud", "2", {"champion": "1"})
    versions = json.loads(_run(cli_registry, "list", "fraud", "--json").output)
    assert [v["version"] for v in versions] == ["1", "2"]
    assert versions[0]["tags"][DATA_AS_OF_TAG] == "2026-10-01T00:00:00Z"
    assert (
        versions[0]["tags"][CHECKSUM_TAG]
        == resolve_model("models:/fraud/1", tracking_uri=cli_registry).checksum
    )
    table = _run(cli_registry, "list")
    assert "fraud" in table.output
    assert "champion→1" in table.output


def test_promote_moves_the_alias(cli_registry: str) -> None:
    result = _run(cli_registry, "promote", "fraud", "2", "--reason", "won fraud-v7")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "fraud@champion: version 1 → 2 (recorded)"
    assert resolve_model("models:/fraud@champion", tracking_uri=cli_registry).version == "2"


def test_verify_passes_then_catches_tampering(cli_registry: str) -> None:
    ok = _run(cli_registry, "verify", "models:/fraud@champion")
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("models:/fraud/1: artifacts match sha256 ")
    path = resolve_model("models:/fraud/1", tracking_uri=cli_registry).artifact_path / "MLmodel"
    path.write_text(path.read_text() + "\n# edited\n")
    bad = _run(cli_registry, "verify", "models:/fraud@champion")
    assert bad.exit_code == 1, bad.output  # the answer "they no longer match"
    assert "no longer match the checksum recorded" in " ".join(bad.output.split())


def test_stale_exit_code_for_alerting(cli_registry: str) -> None:
    fresh = _run(cli_registry, "stale", "--max-age-days", "365")
    assert fresh.exit_code == 0, fresh.output
    assert "no stale models" in fresh.output
    by_data = _run(
        cli_registry, "stale", "--max-age-days", "365", "--max-data-age-days", "1", "--json"
    )
    assert by_data.exit_code == 1
    (stale,) = json.loads(by_data.output)["stale"]
    assert (stale["name"], stale["version"]) == ("fraud", "1")


def test_retire_rewrites_the_experiments_that_serve_it(cli_registry: str, tmp_path: Path) -> None:
    spec_path = tmp_path / "fraud.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "key": "fraud-v7",
                "variants": [
                    {"name": "control", "model": "models:/fraud@champion"},
                    {"name": "treatment", "model": "models:/fraud/2"},
                ],
                "weights": [0.5, 0.5],
            }
        )
    )
    result = _run(
        cli_registry, "retire", "fraud", "2", "-r", "leaks labels", "-e", str(spec_path), "--write"
    )
    assert result.exit_code == 0, result.output
    assert "fraud-v7/treatment" in result.output
    assert yaml.safe_load(spec_path.read_text())["weights"] == [1.0, 0.0]
    retired = list_versions("fraud", tracking_uri=cli_registry)[1]
    assert retired.tags["abflow.retired_reason"] == "leaks labels"


SPEC_WITH_COMMENTS = """\
# Fraud model: three-way test, ramped as a canary.
key: fraud-v8
unit: user_id  # hashed for the split
variants:
  - name: control
    model: models:/fraud@champion
  - name: legacy  # retired below
    model: models:/fraud/2
  - name: challenger
    model: models:/fraud/1
weights: [0.5, 0.25, 0.25]
metrics:
  - {name: caught, kind: recall, role: primary}
rollout:
  challenger: challenger
  steps:
    - {traffic: 0.05, min_duration_hours: 24}  # canary
"""


def test_retire_write_keeps_comments_order_and_rollout(cli_registry: str, tmp_path: Path) -> None:
    spec_path = tmp_path / "fraud.yaml"
    spec_path.write_text(SPEC_WITH_COMMENTS)
    result = _run(
        cli_registry, "retire", "fraud", "2", "-r", "stale data", "-e", str(spec_path), "--write"
    )
    assert result.exit_code == 0, result.output
    assert "(weights; comments kept)" in result.output
    expected = SPEC_WITH_COMMENTS.replace("[0.5, 0.25, 0.25]", "[0.75, 0.0, 0.25]")
    assert spec_path.read_text() == expected  # one line changed, everything else byte-equal


def test_retire_write_touches_no_file_when_it_exits_1(cli_registry: str, tmp_path: Path) -> None:
    spec_path = tmp_path / "fraud.json"
    original = json.dumps(
        {
            "key": "fraud-v9",
            "variants": [
                {"name": "control", "model": "models:/fraud/2"},
                {"name": "treatment", "model": "models:/fraud@champion"},
            ],
        },
        indent=4,
    )
    spec_path.write_text(original)
    result = _run(
        cli_registry, "retire", "fraud", "2", "-r", "stale data", "-e", str(spec_path), "--write"
    )
    assert result.exit_code == 1, result.output
    assert "spec files left as they were" in result.output
    assert spec_path.read_text() == original


def test_errors_are_one_sentence_and_exit_2(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["abflow", "models", "promote", "ghost", "1", "--tracking-uri", tracking_uri]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2  # could not answer; 1 is kept for "stale" and "mismatch"
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot move alias ghost@champion to version 1:")
    assert "\n" not in err
    assert "Traceback" not in err


def test_experiments_register_refuses_a_model_the_registry_does_not_have(
    cli_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As POST /v1/experiments does: an unknown alias was registered, and the gateway then
    could not start on it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cli_registry)
    store = f"sqlite:///{tmp_path / 'abflow.db'}"
    spec_path = tmp_path / "fraud.yaml"

    def register(challenger: str) -> Result:
        spec_path.write_text(
            yaml.safe_dump(
                {
                    "key": "fraud-v9",
                    "variants": [
                        {"name": "control", "model": "models:/fraud@champion"},
                        {"name": "treatment", "model": challenger},
                    ],
                }
            )
        )
        return CliRunner().invoke(
            app, ["experiments", "register", str(spec_path), "--store", store]
        )

    refused = register("models:/fraud@nosuchalias")
    assert refused.exit_code == 2, refused.output
    assert "variants[1].model:" in refused.output
    assert "nosuchalias" in refused.output
    accepted = register("models:/fraud/2")
    assert accepted.exit_code == 0, accepted.output
    assert "registered version 1" in accepted.output
