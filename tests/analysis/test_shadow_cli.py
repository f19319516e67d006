"""``abflow analyze`` and ``abflow gate --require shadow-no-harm`` on a store with shadows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from test_shadow_analysis import simulate_shadow, store_events
from typer.testing import CliRunner

RUNNER = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    from abflow.cli.main import app

    result = RUNNER.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("shadow-cli")
    urls = {}
    for name, shift in (("harmful", 0.3), ("harmless", 0.0)):
        url = f"sqlite:///{folder / f'{name}.db'}"
        noise = 0.05 if shift else 0.01
        events = simulate_shadow(
            np.random.default_rng(18), us_shift=shift, shadow_error_rate=0.0, shadow_noise=noise
        )
        store_events(url, events)
        urls[name] = url
    return urls


def test_gate_exit_codes(stores: dict[str, str], tmp_path: Path) -> None:
    code, output = _run(
        "gate", "fraud", "--store", stores["harmful"], "--require", "shadow-no-harm",
        "--format", "json", "--summary", str(tmp_path / "summary.md"),
    )  # fmt: skip
    assert code == 1, output
    data = orjson.loads(output)
    assert data["require"] == "shadow-no-harm"
    assert [c["check"] for c in data["checks"] if not c["passed"]] == ["shadow guardrail fpr"]
    assert (
        "| shadow guardrail fpr | challenger | **FAIL** |" in (tmp_path / "summary.md").read_text()
    )

    code, output = _run(
        "gate", "fraud", "--store", stores["harmless"], "--require", "shadow-no-harm"
    )
    assert code == 0, output

    code, output = _run(
        "gate", "fraud", "--store", stores["harmless"], "--require", "shadow-no-harm",
        "--min-units", "5000",
    )  # fmt: skip
    assert code == 1, output
    assert "3,000 requests answered by both models (need 5,000)" in output


def test_bad_threshold_names_the_option(stores: dict[str, str]) -> None:
    code, output = _run("analyze", "fraud", "--store", stores["harmless"], "--threshold", "1.5")
    assert code == 2
    assert "--threshold" in output


def test_analyze_formats_carry_the_shadow_section(stores: dict[str, str]) -> None:
    code, output = _run("analyze", "fraud", "--store", stores["harmful"], "--format", "json")
    assert code == 0, output
    shadow = orjson.loads(output)["shadow"]
    assert [s["variant"] for s in shadow] == ["challenger"]
    assert shadow[0]["pairs"] == 3000
    fpr = next(m for m in shadow[0]["measures"] if m["name"] == "false_positive_rate")
    assert fpr["ci_low"] > 0.05
    assert fpr["test"].startswith("McNemar")

    code, output = _run("analyze", "fraud", "--store", stores["harmful"], "--format", "markdown")
    assert code == 0, output
    assert "### Shadow challenger vs served (paired)" in output
    assert "| false_positive_rate | 2," in output

    code, output = _run("analyze", "fraud", "--store", stores["harmful"], "--format", "html")
    assert code == 0, output
    assert "<h2>Shadow challenger vs served (paired)</h2>" in output
    assert output.count("McNemar") >= 4  # positive rate, accuracy, recall, FPR

    # a higher threshold moves both models' decisions: fewer positives for the served one
    low = orjson.loads(_run("analyze", "fraud", "--store", stores["harmful"], "-f", "json")[1])
    high = orjson.loads(
        _run("analyze", "fraud", "--store", stores["harmful"], "-f", "json", "--threshold", "0.9")[
            1
        ]
    )
    served = [
        next(m for m in r["shadow"][0]["measures"] if m["name"] == "positive_rate")["served"]
        for r in (low, high)
    ]
    assert served[1] < served[0]
    assert high["shadow"][0]["threshold"] == 0.9
