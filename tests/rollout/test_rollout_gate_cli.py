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
    code, output = gate(key, "--store", url, "--until", "soon")
    assert (code, "--until: 'soon' is neither epoch seconds" in output) == (2, True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_until_judges_the_events_before_a_cutoff_and_the_json_says_which(
    demo_store: tuple[str, str, object], tmp_path: Path
) -> None:
    """The JSON names the spec version and the window it judged; ``--until`` judges the
    events before a time, as the analysis with that cutoff does."""
    from abflow.analysis import AnalysisOptions, analyze

    url, key, analysed = demo_store
    provenance = analysed.provenance  # type: ignore[attr-defined]
    _, output = gate(key, "--store", url, "--format", "json", "--min-units", "50")
    judged = orjson.loads(output)
    assert judged["window"] == [provenance.window_start, provenance.window_end]
    assert (judged["spec_version"], judged["spec_hash"]) == (1, provenance.spec_hash)

    cut = provenance.window_start + 24 * 3600.0  # the first simulated day
    earlier = analyze(url, key, AnalysisOptions(until=cut, timeline=False))
    all_units = sum(v.units for v in analysed.variants)  # type: ignore[attr-defined]
    assert 0 < sum(v.units for v in earlier.variants) < all_units
    policy = GatePolicy(min_units=50)
    code, output = gate(key, "--store", url, "--format", "json", "--min-units", "50",
                        "--until", str(cut))  # fmt: skip
    assert orjson.loads(output) == evaluate_gate(earlier, policy).as_dict()
    assert orjson.loads(output)["until"] == cut
    assert judged["until"] is None
    assert code == (0 if evaluate_gate(earlier, policy).passed else 1)
    summary = tmp_path / "summary.md"
    gate(key, "--store", url, "--until", str(cut), "--summary", str(summary))
    assert "Spec version 1; events before " in summary.read_text()
    assert f"(--until {cut!r})" in summary.read_text()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_summary_path_that_cannot_be_written_exits_two(
    demo_store: tuple[str, str, object], tmp_path: Path
) -> None:
    url, key, _ = demo_store
    code, output = gate(key, "--store", url, "--summary", str(tmp_path / "no" / "summary.md"))
    assert (code, "does not exist" in output) == (2, True)
