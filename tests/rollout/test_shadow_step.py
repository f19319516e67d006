"""A rollout plan that begins with a shadow step, on a real store (SQLite and PostgreSQL).

During the shadow step the challenger serves no one and the stored spec asks gateways to
mirror requests to it; predictions are logged here as the gateway logs them (a served row
and a shadow row per request, labels by request id). The tick advances only once the
shadow-no-harm gate passes on enough pairs, and rolls back a shadow that is worse with
confidence. The gate's verdict is checked against a paired interval computed with scipy.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rollout_traffic import Clock
from scipy import stats as sps

from abflow.rollout.controller import tick
from abflow.serving.shadow import mirrored_variants
from abflow.spec import parse_experiment
from abflow.store import EventStore

HOUR = 3600.0
KEY = "fraud-v3"
SPEC: dict[str, Any] = {
    "key": KEY,
    "variants": [
        {"name": "champion", "model": "models:/fraud/1"},
        {"name": "challenger", "model": "models:/fraud/2"},
    ],
    "metrics": [
        {
            "name": "fpr",
            "kind": "false_positive_rate",
            "role": "guardrail",
            "direction": "decrease",
            "margin": 0.1,
        },
    ],
    "shadow": {"share": 0.5},
    "rollout": {
        "steps": [
            {"shadow": True, "min_duration_hours": 1, "min_samples": 400},
            {"traffic": 0.1, "min_duration_hours": 1, "min_samples": 100},
        ],
        "guardrails": ["fpr"],
    },
}
_ids = itertools.count()


def log_pairs(
    store: EventStore, n: int, *, shift: float, seed: int, at: float
) -> list[tuple[float, float, float]]:
    """Log ``n`` requests answered by the champion and mirrored to the challenger, whose
    score is the champion's plus ``shift`` on negatives; (label, served, shadow) each."""
    rng = np.random.default_rng(seed)
    phase = store.current_phase(KEY).phase
    predictions, outcomes, rows = [], [], []
    for _ in range(n):
        r = next(_ids)
        label = float(rng.random() < 0.3)
        served = float(np.clip(0.5 * label + 0.25 + rng.normal(0, 0.15), 0, 1))
        shadow = float(np.clip(served + (0 if label else shift) + rng.normal(0, 0.01), 0, 1))
        rows.append((label, served, shadow))
        for is_shadow, variant, score in (
            (False, "champion", served),
            (True, "challenger", shadow),
        ):
            predictions.append(
                {"event_id": f"p{r}-{variant}", "ts": at, "request_id": f"r{r}",
                 "experiment_key": KEY, "phase": phase, "unit_id": f"u{r}", "variant": variant,
                 "model_version": variant, "latency_ms": 5.0, "is_fallback": False,
                 "is_shadow": is_shadow, "score": score, "error": None}
            )  # fmt: skip
        outcomes.append(
            {"event_id": f"o{r}", "ts": at + 1, "unit_id": f"u{r}", "name": "label",
             "value": label, "request_id": f"r{r}", "experiment_key": KEY}
        )  # fmt: skip
    store.write_events("prediction", predictions)
    store.write_events("outcome", outcomes)
    return rows


def fpr_interval(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Served FPR and the paired 95 % interval of shadow minus served FPR (scipy)."""
    data = np.array(rows)
    negatives = data[data[:, 0] < 0.5]
    served = (negatives[:, 1] >= 0.5).astype(float)
    shadow = (negatives[:, 2] >= 0.5).astype(float)
    low, high = sps.ttest_rel(shadow, served).confidence_interval(0.95)
    return float(served.mean()), float(low), float(high)


def mirrored(store: EventStore) -> list[str]:
    spec = store.get_experiment(KEY).spec
    return [spec.variant_names[i] for i in sorted(mirrored_variants(spec))]


def test_shadow_step_waits_then_advances_when_shadow_no_harm_holds(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    store.register_experiment(parse_experiment(SPEC))
    assert mirrored(store) == []  # registered: nothing mirrored before the first tick
    started = tick(store, KEY, now=clock.now)
    assert (started.action, started.step) == ("started", 0)
    live = store.get_experiment(KEY).spec
    assert live.effective_weights == [1.0, 0.0]
    assert mirrored(store) == ["challenger"]
    assert live.shadow is not None
    assert live.shadow.share == 0.5

    rows = log_pairs(store, 300, shift=0.0, seed=1, at=clock.now + 60)
    early = tick(store, KEY, now=clock.now + 0.5 * HOUR)
    assert early.action == "held"
    assert early.reasons == [
        "shadow step has run 0.5 of 1 hours",
        "shadow has 300 of 400 paired requests",
    ]
    # registering the file again during the shadow step keeps the copies on
    store.register_experiment(parse_experiment(SPEC))
    assert mirrored(store) == ["challenger"]

    rows += log_pairs(store, 700, shift=0.0, seed=2, at=clock.now + 120)
    served, _low, high = fpr_interval(rows)
    assert high <= 0.1 * served  # the reference says harm beyond the margin is ruled out
    clock.now += 2 * HOUR
    advanced = tick(store, KEY, now=clock.now)
    assert (advanced.action, advanced.step) == ("advanced", 1), advanced.reasons
    assert advanced.evidence["shadow_pairs"] == 1000
    assert store.get_experiment(KEY).spec.effective_weights == [0.9, 0.1]
    assert mirrored(store) == []  # the challenger now serves; copies stop
    moves = [e for e in store.audit_entries(KEY) if e.action.startswith("rollout.")]
    assert [e.payload["step"] for e in moves] == [0, 1]


def test_shadow_step_holds_while_undecided_and_rolls_back_a_harmful_shadow(
    ramp_store: EventStore, ramp_clock: Clock
) -> None:
    store, clock = ramp_store, ramp_clock
    store.register_experiment(parse_experiment(SPEC))
    tick(store, KEY, now=clock.now)
    # slightly worse on few pairs: the interval neither rules harm out nor proves it
    rows = log_pairs(store, 450, shift=0.015, seed=3, at=clock.now + 60)
    served, low, high = fpr_interval(rows)
    allowed = 0.1 * served
    assert low <= allowed < high
    clock.now += 2 * HOUR
    held = tick(store, KEY, now=clock.now)
    assert held.action == "held"
    assert held.reasons[0] == "shadow-no-harm does not hold yet"
    assert held.reasons[1].startswith("shadow guardrail fpr: ")
    assert mirrored(store) == ["challenger"]

    rows += log_pairs(store, 1500, shift=0.3, seed=4, at=clock.now + 60)
    served, low, high = fpr_interval(rows)
    assert low > 0.1 * served  # the reference says the whole interval is harm
    rolled = tick(store, KEY, now=clock.now + HOUR)
    assert rolled.action == "rolled_back"
    assert rolled.reasons[0].startswith("shadow guardrail fpr fails")
    assert store.get_experiment(KEY).spec.effective_weights == [1.0, 0.0]
    assert mirrored(store) == []  # rolled back: the copies stop too
    assert tick(store, KEY, now=clock.now + 2 * HOUR).action == "finished"


def test_a_shadow_step_must_come_first_and_lead_somewhere() -> None:
    from abflow.errors import InvalidSpecError

    for steps, problem in (
        ([{"traffic": 0.1}, {"shadow": True}], "only the first step can be one"),
        ([{"shadow": True}], "must be followed by a ramp step"),
        ([{"shadow": True, "traffic": 0.2}, {"traffic": 0.5}], "serves no traffic"),
        ([{"traffic": 0}], "traffic must be above 0"),
    ):
        with pytest.raises(InvalidSpecError, match=problem):
            parse_experiment({**SPEC, "rollout": {"steps": steps}})


def test_rollout_status_names_the_shadow_step(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abflow.cli.main import app

    url = f"sqlite:///{tmp_path / 'status.db'}"
    with EventStore.open(url, upgrade=True) as store:
        store.register_experiment(parse_experiment(SPEC))
    done = CliRunner().invoke(app, ["rollout", "status", KEY, "--store", url])
    assert done.exit_code == 0, done.output
    assert "shadow → 10%" in done.output
