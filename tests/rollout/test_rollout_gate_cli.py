"""``abflow gate`` on a real store written by a small demo run: exit codes, JSON, summary."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from abflow.analysis.decision import underpowered
from abflow.demo import DemoOptions, run_demo
from abflow.rollout import GatePolicy, Requirement, evaluate_gate

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, object]:
    folder = tmp_path_factory.mktemp("gate")
    url = f"sqlite:///{folder / 'store.db'}"
    options = DemoOptions(
        store_url=url,
        users=400,
        days=3,
        drift_day=0,
        output=folder / "report.html",
        workdir=folder / "work",
        use_registry=False,
        samples=4000,
    )
    outcome = run_demo(options, Console(file=io.StringIO(), width=100))
    return url, outcome.experiment_key, outcome.result


def gate(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    from abflow.cli.main import app

    result = RUNNER.invoke(app, ["gate", *args], env={"COLUMNS": "200", **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("require", list(Requirement))
def test_exit_code_and_json_follow_the_rules(
    demo_store: tuple[str, str, object], require: Requirement
) -> None:
    url, key, analysed = demo_store
    expected = evaluate_gate(analysed, GatePolicy(require=require))  # type: ignore[arg-type]
    code, output = gate(key, "--store", url, "--require", require.value, "--format", "json")
    assert code == (0 if expected.passed else 1)
    assert orjson.loads(output) == expected.as_dict()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_guardrail_failure_closes_the_gate(demo_store: tuple[str, str, object]) -> None:
    url, key, analysed = demo_store
    guardrail_failed = any(
        c.guardrail == "fail" or underpowered(m, c) is not None  # no-harm cannot see harm
        for m in analysed.metrics  # type: ignore[attr-defined]
        if m.role == "guardrail"
        for c in m.comparisons
    )
    code, output = gate(key, "--store", url)
    assert code == (1 if guardrail_failed or analysed.srm.is_mismatch else 0)  # type: ignore[attr-defined]
    assert f"{key} phase 1 (require no-harm)" in output


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_markdown_goes_to_the_job_summary(
    demo_store: tuple[str, str, object], tmp_path: Path
) -> None:
    url, key, _ = demo_store
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    code, _ = gate(
        key, "--store", url, "--min-units", "1", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    text = summary.read_text()
    assert text.startswith("earlier step\n### abflow gate ")  # appended, not overwritten
    assert "| sample size | champion | pass |" in text
    assert code in (0, 1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bad_arguments_exit_two(demo_store: tuple[str, str, object]) -> None:
    url, key, _ = demo_store
    code, output = gate(key, "--store", url, "--variant", "nope")
    assert code == 2
    assert "'nope' is not a treatment" in output
    code, output = gate(key, "--store", url, "--min-units", "-5")
    assert (code, "--min-units must be 0 or more" in output) == (2, True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_summary_path_that_cannot_be_written_exits_two(
    demo_store: tuple[str, str, object], tmp_path: Path
) -> None:
    url, key, _ = demo_store
    code, output = gate(key, "--store", url, "--summary", str(tmp_path / "no" / "summary.md"))
    assert (code, "does not exist" in output) == (2, True)
