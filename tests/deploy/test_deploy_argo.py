"""The Argo templates in deploy/argo: schema-valid, and their commands do what Argo expects.

No Argo controller runs here. Each template is checked against the hand-written schema of
crd_schemas.py (the fields used, closed objects), and its embedded Job or containers against
the Kubernetes API (kubernetes-validate, strict, 1.28 and 1.33). Then the containers' args,
with Argo's parameter substitution done as Argo does it, run through the real CLI on a
SQLite store: the AnalysisTemplate's gate must exit 0 to pass and 1 to fail a canary, and
the CronWorkflow's tick must exit 1 after a rollback so that the workflow fails.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import orjson
import pytest
import yaml
from crd_schemas import SCHEMAS, core_parts
from typer.testing import CliRunner

from abflow.spec import parse_experiment
from abflow.store import EventStore

ARGO = Path(__file__).parents[2] / "deploy" / "argo"
KUBERNETES_VERSIONS = ["1.28.0", "1.33.0"]
RUNNER = CliRunner()

SPEC: dict[str, Any] = {
    "key": "canary",
    "unit": "user_id",
    "variants": [
        {"name": "control", "model": "python:abflow.serving.demo_models:champion"},
        {"name": "treatment", "model": "python:abflow.serving.demo_models:challenger"},
    ],
    "weights": [0.5, 0.5],
}
RAMP_SPEC: dict[str, Any] = {
    **{k: v for k, v in SPEC.items() if k != "weights"},
    "key": "ramp",
    "rollout": {"steps": [{"traffic": 0.2, "min_duration_hours": 1, "min_samples": 10}]},
}


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ARGO / name).read_text())
    return document


def substitute(args: list[str], prefix: str, values: dict[str, str]) -> list[str]:
    """Argo's ``{{prefix.name}}`` substitution; an unknown name is an error, as in Argo."""

    def one(match: re.Match[str]) -> str:
        return values[match.group(1)]

    pattern = re.compile(r"\{\{" + re.escape(prefix) + r"\.([A-Za-z0-9_-]+)\}\}")
    return [pattern.sub(one, arg) for arg in args]


def run(args: list[str], store_url: str) -> tuple[int, str]:
    from abflow.cli.main import app

    result = RUNNER.invoke(app, args, env={"ABFLOW_STORE_URL": store_url, "COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def exposures(key: str, phase: int, arms: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{key}-{phase}-{i}",
            "ts": time.time(),
            "experiment_key": key,
            "phase": phase,
            "unit_id": f"u{i}",
            "variant": ("control", "treatment")[arm],
            "attributes_json": None,
        }
        for i, arm in enumerate(arms)
    ]


@pytest.mark.parametrize("name", ["analysis-template.yaml", "rollout-cycle-cronworkflow.yaml"])
def test_templates_are_valid(name: str) -> None:
    document = load(name)
    jsonschema.validate(document, SCHEMAS[document["kind"]])
    parts = core_parts(document)
    assert len(parts) == (1 if document["kind"] == "AnalysisTemplate" else 2)
    for part in parts:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(part, version, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    """The schemas are closed: they would not pass a template with a typo."""
    document = load("analysis-template.yaml")
    document["spec"]["metrics"][0]["failureLimt"] = 0
    with pytest.raises(jsonschema.ValidationError, match="failureLimt"):
        jsonschema.validate(document, SCHEMAS["AnalysisTemplate"])


def gate_args(**arguments: str) -> list[str]:
    template = load("analysis-template.yaml")["spec"]
    values = {a["name"]: a["value"] for a in template["args"] if "value" in a}
    values.update(arguments)
    job = template["metrics"][0]["provider"]["job"]["spec"]
    return substitute(job["template"]["spec"]["containers"][0]["args"], "args", values)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_analysis_job_passes_a_balanced_canary_and_fails_a_broken_split(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url) as store:
        phase = store.register_experiment(parse_experiment(SPEC)).phase
        balanced = exposures("canary", phase, [i % 2 for i in range(400)])
        store.write_events("exposure", balanced)
    args = gate_args(experiment="canary")
    assert args == [
        "gate", "canary", "--require", "no-harm", "--min-units", "0", "--format", "markdown",
    ]  # fmt: skip
    passed, report = run(args, url)
    assert passed == 0, report
    # more units than either arm has: the gate cannot pass, and the Job fails the step
    too_few, report = run(gate_args(experiment="canary", **{"min-units": "1000"}), url)
    assert too_few == 1, report
    with EventStore.open(url) as store:  # 300 control against 100 treatment under 50/50: SRM
        skewed = exposures("canary", phase, [0] * 300 + [1] * 100)
        store.write_events("exposure", [{**e, "event_id": "skew-" + e["event_id"]} for e in skewed])
    failed, report = run(args, url)
    assert failed == 1, report


def cycle_steps(**parameters: str) -> list[tuple[str, list[str], bool]]:
    """(step, args, continue on failure) in the order the ``cycle`` template runs them."""
    spec = load("rollout-cycle-cronworkflow.yaml")["spec"]["workflowSpec"]
    values = {p["name"]: p["value"] for p in spec["arguments"]["parameters"]}
    values.update(parameters)
    templates = {t["name"]: t for t in spec["templates"]}
    steps = templates[spec["entrypoint"]]["steps"]
    return [
        (
            step["name"],
            substitute(templates[step["template"]]["container"]["args"], "workflow.parameters",
                       values),
            step.get("continueOn", {}).get("failed", False),
        )
        for group in steps
        for step in group
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_cycle_ticks_and_fails_the_workflow_after_a_rollback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore.open(url) as store:
        store.register_experiment(parse_experiment(RAMP_SPEC))
    steps = cycle_steps(experiment="ramp")
    assert [(name, keep_going) for name, _, keep_going in steps] == [
        ("analyze", True),
        ("tick", False),
    ]
    (analysed, _), (ticked, started) = (run(args, url) for _, args, _ in steps)
    assert (analysed, ticked) == (0, 0)
    assert orjson.loads(started)["action"] == "started"
    with EventStore.open(url) as store:  # 50/50 traffic under a 80/20 plan: SRM
        phase = store.current_phase("ramp").phase
        store.write_events("exposure", exposures("ramp", phase, [i % 2 for i in range(400)]))
    code, output = run(steps[1][1], url)
    assert code == 1, output
    decision = orjson.loads(output)
    assert decision["action"] == "rolled_back"
    assert decision["evidence"]["units"] == {"control": 200, "treatment": 200}
