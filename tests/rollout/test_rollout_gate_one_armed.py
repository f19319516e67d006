"""Harm seen in one arm only (30 % complaints against 0 %) is a failing guardrail in the
analysis itself: ``abflow analyze --format json`` says ``fail``, ``abflow gate`` exits 1, and
the controller reads the same status (real stores: SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from rollout_traffic import Clock, expose, log_exact_outcomes
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from abflow.routing import assign
from abflow.spec import parse_experiment
from abflow.store import EventStore

KEY = "harm-gate"
PER_ARM = 300
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "control", "model": "models:/ranker/1"},
        {"name": "challenger", "model": "models:/ranker/2"},
    ],
    "weights": [0.5, 0.5],
    "metrics": [
        {"name": "purchase", "kind": "conversion", "event": "purchase", "role": "primary"},
        {
            "name": "complaints",
            "kind": "conversion",
            "event": "complaint",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.10,
        },
    ],
}
RUNNER = CliRunner()


def arms(store: EventStore, per_arm: int, at: float) -> dict[str, list[str]]:
    """Exactly ``per_arm`` exposed units in each arm, routed by the registered spec."""
    spec = store.get_experiment(KEY).spec
    chosen: dict[str, list[str]] = {"control": [], "challenger": []}
    for i in range(100 * per_arm):
        unit = f"u{i}"
        variant = assign(spec, {"user_id": unit}).variant
        assert variant is not None
        if len(chosen[variant]) < per_arm:
            chosen[variant].append(unit)
        if min(len(units) for units in chosen.values()) == per_arm:
            break
    expose(store, KEY, [*chosen["control"], *chosen["challenger"]], at=at)
    return chosen


def cli(*args: str) -> tuple[int, str]:
    from abflow.cli.main import app

    result = RUNNER.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def harmed(ramp_store_url: str, ramp_store: EventStore, ramp_clock: Clock) -> str:
    ramp_store.register_experiment(parse_experiment(SPEC))
    chosen = arms(ramp_store, PER_ARM, ramp_clock.now)
    complaints = log_exact_outcomes(
        ramp_store, KEY, chosen["challenger"][:90], name="complaint", at=ramp_clock.now
    )
    assert complaints == 90  # 30 % of the challenger's 300 units, none of the control's
    return ramp_store_url


def test_analyze_json_says_the_one_armed_guardrail_fails(harmed: str) -> None:
    code, output = cli("analyze", KEY, "--store", harmed, "--format", "json")
    assert code == 0, output
    result = orjson.loads(output)
    complaints = next(m for m in result["metrics"] if m["name"] == "complaints")
    [comparison] = complaints["comparisons"]
    assert comparison["error_code"] == "zero_control_mean"  # the relative effect is undefined
    assert comparison["guardrail"] == "fail"
    evidence = comparison["guardrail_evidence"]
    assert evidence["basis"] == "absolute difference (the control's value is 0)"
    assert evidence["relative"] is False
    assert evidence["effect"] == pytest.approx(0.3)
    # Welch's interval on the absolute difference, written out: only the challenger varies.
    se = math.sqrt(0.3 * 0.7 / PER_ARM)
    df = PER_ARM - 1.0
    half = scipy_stats.t.ppf(0.975, df) * se
    assert evidence["ci_low"] == pytest.approx(0.3 - half, rel=1e-9)
    assert evidence["ci_high"] == pytest.approx(0.3 + half, rel=1e-9)
    assert evidence["p_value"] == pytest.approx(2 * scipy_stats.t.sf(0.3 / se, df), abs=1e-300)
    assert result["decision"]["verdict"] == "keep_control"
    assert "judged by absolute difference" in result["decision"]["reasons"][0]


def test_gate_fails_on_the_one_armed_guardrail(harmed: str) -> None:
    code, output = cli("gate", KEY, "--store", harmed, "--format", "json")
    assert code == 1, output
    gate = orjson.loads(output)
    assert gate["passed"] is False
    [guardrail] = [c for c in gate["checks"] if c["check"] == "guardrail complaints"]
    assert guardrail["passed"] is False
    assert guardrail["detail"].startswith("fail: absolute effect +0.3 [")


def _exact_guardrail(url: str) -> dict[str, Any]:
    code, output = cli("analyze", KEY, "--store", url, "--format", "json")
    assert code == 0, output
    complaints = next(m for m in orjson.loads(output)["metrics"] if m["name"] == "complaints")
    [comparison] = complaints["comparisons"]
    evidence = comparison["guardrail_evidence"]
    assert evidence["basis"] == "exact permutation test (neither arm varies)"
    assert evidence["error_code"] == "zero_variance"
    return {"status": comparison["guardrail"], "p_value": evidence["p_value"]}


def test_no_complaints_anywhere_rules_out_nothing_and_the_gate_says_so(
    ramp_store_url: str, ramp_store: EventStore, ramp_clock: Clock
) -> None:
    """0 complaints in 50 units per arm leaves up to about 6 % possible in the challenger
    (rule of three), which a margin relative to 0 does not allow: inconclusive, and a gate
    requiring non-inferiority fails it (an event name never logged looks the same)."""
    ramp_store.register_experiment(parse_experiment(SPEC))
    arms(ramp_store, 50, ramp_clock.now)
    assert _exact_guardrail(ramp_store_url) == {"status": "inconclusive", "p_value": None}
    code, output = cli(
        "gate", KEY, "--store", ramp_store_url, "--require", "non-inferior", "--format", "json"
    )
    [guardrail] = [
        c for c in orjson.loads(output)["checks"] if c["check"] == "guardrail complaints"
    ]
    assert guardrail["passed"] is False
    assert code == 1, output


@pytest.mark.parametrize(("per_arm", "status"), [(2, "inconclusive"), (8, "pass")])
def test_a_constant_better_challenger_passes_once_the_exact_p_is_below_alpha(
    ramp_store_url: str, ramp_store: EventStore, ramp_clock: Clock, per_arm: int, status: str
) -> None:
    """Every control unit complained, no challenger unit did: p = 1 / C(2n, n), 0.17 for 2
    units per arm (no evidence), 7.8e-5 for 8."""
    ramp_store.register_experiment(parse_experiment(SPEC))
    chosen = arms(ramp_store, per_arm, ramp_clock.now)
    log_exact_outcomes(ramp_store, KEY, chosen["control"], name="complaint", at=ramp_clock.now)
    judged = _exact_guardrail(ramp_store_url)
    assert judged["status"] == status
    assert judged["p_value"] == pytest.approx(1 / math.comb(2 * per_arm, per_arm), rel=1e-12)


def test_every_challenger_unit_harmed_on_too_few_units_fails_the_no_harm_gate(
    ramp_store_url: str, ramp_store: EventStore, ramp_clock: Clock
) -> None:
    """Every challenger unit complained, no control unit did, 2 units per arm: the exact p
    (1 / C(4, 2) = 0.17) cannot call it harm, and the default no-harm gate passed, exit 0,
    printing "+nan [+nan, +nan]". Harm seen and not ruled out fails it."""
    ramp_store.register_experiment(parse_experiment(SPEC))
    chosen = arms(ramp_store, 2, ramp_clock.now)
    log_exact_outcomes(ramp_store, KEY, chosen["challenger"], name="complaint", at=ramp_clock.now)
    judged = _exact_guardrail(ramp_store_url)
    assert judged["status"] == "inconclusive"
    assert judged["p_value"] == pytest.approx(1 / 6, rel=1e-12)
    code, output = cli("gate", KEY, "--store", ramp_store_url, "--format", "json")
    assert code == 1, output
    [guardrail] = [
        c for c in orjson.loads(output)["checks"] if c["check"] == "guardrail complaints"
    ]
    assert guardrail["passed"] is False
    assert guardrail["detail"].startswith("underpowered, cannot rule out harm: complaints 0")
    assert "against 1, judged by exact permutation test" in guardrail["detail"]
    assert "nan" not in guardrail["detail"]
