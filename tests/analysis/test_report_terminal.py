"""``abflow analyze`` in an 80-column terminal: every number printed whole, none cut to ``0.…``.

The command runs as a user runs it (a subprocess with ``COLUMNS=80``); each metric's values,
effect, interval bounds and p-value are read back from the printed tables and compared with
pandas on the simulated rows (values) and with the analysis result (effects and p-values).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from analysis_support import SPEC, START, register, simulate, write

from abflow.analysis import ExperimentResult, analyze, render_table
from abflow.spec import parse_experiment

NUMBER = r"[-+]?(?:<)?[\d,]*\.?\d+(?: ?(?:%|pp|ms|/1k))?"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ExperimentResult, Any]:
    folder = tmp_path_factory.mktemp("terminal")
    url = f"sqlite:///{folder / 'store.db'}"
    spec = parse_experiment(SPEC)
    register(url, spec, [{"phase": 1, "started_at": START, "weights_json": "[0.5, 0.5]",
                          "coverage": 1.0}])  # fmt: skip
    events = simulate(np.random.default_rng(3))
    write(url, events)
    return url, analyze(url, "checkout"), events


def run_analyze(url: str, columns: int) -> str:
    code = f"from abflow.cli.main import main\nmain(['analyze', 'checkout', '--store', {url!r}])"
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode in (0, 1), done.stderr  # 1: the verdict is not "ship"
    return done.stdout


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]


@pytest.mark.slow  # a real `abflow analyze` process: about 10 s, 20 s on a loaded machine
def test_every_number_is_whole_at_80_columns(
    store: tuple[str, ExperimentResult, Any], tmp_path: Path
) -> None:
    url, result, events = store
    text = run_analyze(url, 80)
    (tmp_path / "analyze-80.txt").write_text(text)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines() if "│" in line) <= 80
    rows = [cells(line) for line in text.splitlines() if line.startswith("│")]
    by_name = {}
    for row in rows:
        name = row[0].removesuffix(" P").removesuffix(" G")
        by_name.setdefault(name, []).append(row)
    # each metric: a values row (control, treatment) and an effects row
    exposures, outcomes, _ = events.frames()
    units = exposures.drop_duplicates("unit_id").set_index("unit_id")["variant"]
    for metric in result.metrics:
        values, effects = by_name[metric.name]
        comparison = metric.comparisons[0]
        if metric.kind == "conversion":  # independent: pandas on the rows
            buyers = set(outcomes[(outcomes.name == "purchase")].unit_id)
            first = exposures.groupby("unit_id").ts.min()
            in_experiment = outcomes[(outcomes.name == "purchase")].merge(
                first.rename("first"), left_on="unit_id", right_index=True
            )
            buyers = set(in_experiment[in_experiment.ts >= in_experiment["first"]].unit_id)
            for variant, cell in zip(("control", "treatment"), values[1:3], strict=True):
                members = units[units == variant].index
                rate = np.mean([u in buyers for u in members])
                assert float(cell.rstrip("%")) / 100 == pytest.approx(rate, abs=5e-5)
        for variant_value, cell in zip(metric.values, values[1:3], strict=True):
            assert re.fullmatch(NUMBER, cell), cell
            number = float(re.sub(r"[^\d.+-]", "", cell))
            scale = 100 if cell.endswith("%") else 1
            assert number == pytest.approx(variant_value.value * scale, rel=5e-3, abs=5e-3)
        effect, interval, p_value, verdict = effects[1:5]
        assert re.fullmatch(NUMBER, effect), effect
        scale = 1 if metric.kind in ("latency", "mean", "sum", "ratio", "mae", "cost") else 100
        assert float(re.sub(r"[^\d.+-]", "", effect)) == pytest.approx(
            comparison.effect * scale, rel=5e-3, abs=5e-3
        )
        low, high = (float(x) for x in re.findall(r"[-+][\d.]+", interval))
        assert low == pytest.approx(comparison.ci_low * scale, rel=5e-3, abs=5e-3)
        assert high == pytest.approx(comparison.ci_high * scale, rel=5e-3, abs=5e-3)
        p = comparison.adjusted_p_value
        assert p is not None
        assert p_value == ("<0.0001" if p < 1e-4 else f"{p:.4f}")
        assert verdict == (comparison.guardrail or comparison.outcome)


def test_a_wide_terminal_keeps_one_table(store: tuple[str, ExperimentResult, Any]) -> None:
    _, result, _ = store
    for narrow in (60, 80, 100):
        assert "…" not in render_table(result, width=narrow)
    text = render_table(result, width=160)
    assert "Effects vs control" not in text
    header = next(line for line in text.splitlines() if "95% interval" in line)
    assert header.split("┃")[2:4] == ["   control ", " treatment "]
    assert "…" not in text


@pytest.mark.slow  # a real `abflow analyze` process
def test_verdict_reasons_wrap_inside_their_panel(store: tuple[str, ExperimentResult, Any]) -> None:
    url, result, _ = store
    text = run_analyze(url, 60)  # narrower than every reason: each must wrap, none be cut
    assert max(len(reason) for reason in result.decision.reasons) > 60 - 6
    boxed = " ".join(line.strip("│ ") for line in text.splitlines() if line.startswith("│"))
    flat = " ".join(boxed.split())
    for reason in [result.decision.summary, *result.decision.reasons]:
        assert " ".join(reason.split()) in flat, reason
