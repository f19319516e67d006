"""What the dashboard shows, as finished text and charts: the browser formats nothing.

Numbers go through :mod:`abflow.analysis.formatting` and charts through
:mod:`abflow.analysis.charts`, the code the HTML report uses, so a metric reads the same
(``54.21%``, ``+7.59 pp``, ``13.5 ms``, ``<0.0001``) on the page, in the report and in the
terminal. Every value here is plain text the page writes with ``textContent``; the charts
are SVG built by :mod:`abflow.analysis.svg`, which escapes every label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from abflow.analysis import AnalysisOptions, ExperimentResult, analyze
from abflow.analysis.charts import assignment_chart, effect_charts, latency_chart, timeline_charts
from abflow.analysis.formatting import (
    format_share,
    format_srm,
    format_timestamp,
    metric_rows,
)
from abflow.analysis.report_text import progress_text
from abflow.analysis.shadow import SHADOW_COLUMNS, shadow_rows, shadow_summary
from abflow.dashboard.monitoring import monitoring_view
from abflow.rollout.plan import ROLLOUT_ACTIONS, RolloutState, state_from_audit
from abflow.security.audit import AuditEntry
from abflow.spec import ExperimentSpec
from abflow.store import EventStore

__all__ = ["AUDIT_LIMIT", "experiment_list", "experiment_view", "tone"]

AUDIT_LIMIT = 200
"""Newest audit entries shown per experiment (``abflow audit verify`` reads them all)."""

_TONES = {
    "better": "good",
    "pass": "good",
    "healthy": "good",
    "ship": "good",
    "promoted": "good",
    "worse": "bad",
    "fail": "bad",
    "mismatch": "bad",
    "keep_control": "bad",
    "invalid": "bad",
    "rolled_back": "bad",
    "error": "warn",
    "not_enough_data": "warn",
    "keep_running": "warn",
    "ramping": "warn",
}

_ACTIONS = {
    "experiment.registered": "spec registered",
    "rollout.step": "ramp step",
    "rollout.rolled_back": "rolled back",
    "rollout.promoted": "promoted",
    "rollout.reset": "rollout reset",
    "token.created": "token created",
    "token.revoked": "token revoked",
}


def tone(status: str) -> str:
    """``good``, ``bad``, ``warn`` or ``neutral``: the colour of a status on the page."""
    return _TONES.get(status, "neutral")


def _share(value: float) -> str:
    return f"{value:.0%}" if value * 100 == round(value * 100) else f"{value:.1%}"


def _stage(spec: ExperimentSpec, state: RolloutState) -> tuple[str, str]:
    """The rollout's stage in words, and its tone."""
    plan = spec.rollout
    if plan is None:
        return "no rollout plan", "neutral"
    steps = len(plan.steps)
    if state.stage == "not_started":
        return f"not started ({steps} steps planned)", "neutral"
    if state.stage == "ramping" and state.step is not None:
        step = plan.steps[state.step]
        to = spec.variant_names[spec.challenger_index]
        mirrored = " in shadow" if getattr(step, "shadow", False) else ""
        return f"step {state.step + 1} of {steps}: {_share(step.traffic)} to {to}{mirrored}", "warn"
    at = f" at step {state.step + 1}" if state.step is not None else ""
    label = state.stage.replace("_", " ")
    return label + (at if state.stage == "rolled_back" else ""), tone(state.stage)


def _status(spec: ExperimentSpec, state: RolloutState, is_open: bool) -> tuple[str, str]:
    if state.stage in ("promoted", "rolled_back"):
        return state.stage.replace("_", " "), tone(state.stage)
    if not is_open:
        return "stopped", "neutral"
    return ("ramping", "warn") if state.stage == "ramping" else ("running", "good")


def experiment_list(store: EventStore, serving: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every registered experiment with its status, rollout stage and live weights."""
    items = []
    for stored in sorted(store.list_experiments(), key=lambda s: s.key):
        spec = stored.spec
        state = state_from_audit(store.audit_entries(spec.key))
        phase = store.current_phase(spec.key)
        status, status_tone = _status(spec, state, phase.ended_at is None)
        stage, stage_tone = _stage(spec, state)
        weights = spec.effective_weights
        items.append(
            {
                "key": spec.key,
                "name": spec.name if spec.name != spec.key else "",
                "status": status,
                "status_tone": status_tone,
                "stage": stage,
                "stage_tone": stage_tone,
                "variants": ", ".join(
                    f"{name} {_share(weight)}"
                    for name, weight in zip(spec.variant_names, weights, strict=True)
                ),
                "phase": str(phase.phase),
                "since": format_timestamp(phase.started_at),
                "version": str(stored.version),
                "is_served_here": spec.key in serving,
            }
        )
    return items


def _rollout(spec: ExperimentSpec, entries: list[AuditEntry]) -> dict[str, Any]:
    state = state_from_audit(entries)
    stage, stage_tone = _stage(spec, state)
    plan = spec.rollout
    steps = []
    if plan is not None:
        for index, step in enumerate(plan.steps):
            if state.stage == "promoted" or (state.step is not None and index < state.step):
                where = "done"
            elif state.step == index and state.stage != "not_started":
                where = "stopped" if state.stage == "rolled_back" else "current"
            else:
                where = "next"
            hours = step.min_duration_hours
            steps.append(
                {
                    "label": _share(step.traffic)
                    + (" shadow" if getattr(step, "shadow", False) else ""),
                    "detail": f"at least {hours:g} h and {step.min_samples:,} units",
                    "state": where,
                }
            )
    history = [
        {
            "when": format_timestamp(e.ts),
            "what": _action_label(e),
            "actor": e.actor,
            "detail": _detail(e),
            "tone": tone(ROLLOUT_ACTIONS[e.action]),
        }
        for e in reversed(entries)
        if e.action in ROLLOUT_ACTIONS
    ]
    return {
        "has_plan": plan is not None,
        "stage": stage,
        "stage_tone": stage_tone,
        "challenger": spec.variant_names[spec.challenger_index],
        "steps": steps,
        "history": history,
    }


def _action_label(entry: AuditEntry) -> str:
    label = _ACTIONS.get(entry.action, entry.action.replace("_", " ").replace(".", " "))
    step = entry.payload.get("step")
    if entry.action == "rollout.step" and isinstance(step, int):
        share = entry.payload.get("share")
        to = f": {_share(share)} to the challenger" if isinstance(share, int | float) else ""
        return f"{label} {step + 1}{to}"
    return label


def _detail(entry: AuditEntry) -> str:
    """The payload in words: reasons for rollout moves, version and phase for a spec."""
    payload: Mapping[str, Any] = entry.payload
    if entry.action == "experiment.registered":
        phase = f"phase {payload.get('phase')}" + (" (new)" if payload.get("new_phase") else "")
        reason = payload.get("reason") or ""
        text = f"version {payload.get('version')}, {phase}"
        return f"{text}: {reason}" if reason else text
    reasons = payload.get("reasons")
    if isinstance(reasons, list) and reasons:
        return "; ".join(str(r) for r in reasons)
    scalars = [
        f"{key.replace('_', ' ')} {value}"
        for key, value in payload.items()
        if isinstance(value, str | int | float | bool) and key != "evidence"
    ]
    return ", ".join(scalars)


def _audit(entries: list[AuditEntry]) -> list[dict[str, str]]:
    return [
        {
            "seq": str(e.seq),
            "when": format_timestamp(e.ts),
            "actor": e.actor,
            "what": _action_label(e),
            "detail": _detail(e),
        }
        for e in reversed(entries[-AUDIT_LIMIT:])
    ]


def _metrics(result: ExperimentResult) -> list[dict[str, Any]]:
    return [
        {
            "name": row.name,
            "kind": row.kind + (" · CUPED" if row.cuped else ""),
            "role": row.role,
            "variant": row.variant,
            "values": row.values if row.is_first else ["" for _ in row.values],
            "effect": row.effect,
            "interval": row.interval,
            "p": row.p,
            "raw_p": row.raw_p,
            "status": row.status,
            "tone": tone(row.status),
            "is_first": row.is_first,
        }
        for row in metric_rows(result)
    ]


def _result(result: ExperimentResult) -> dict[str, Any]:
    d = result.decision
    p = result.provenance
    return {
        "title": f"{result.name} ({result.experiment_key})"
        if result.name != result.experiment_key
        else result.experiment_key,
        "meta": (
            f"phase {result.phase} · {result.method} analysis · alpha {result.alpha:g} · "
            f"{result.correction} correction · spec v{p.spec_version} · data "
            f"{format_timestamp(p.window_start)} → {format_timestamp(p.window_end)}"
        ),
        "verdict": {"summary": d.summary, "reasons": list(d.reasons), "tone": tone(d.verdict)},
        "warnings": list(result.warnings),
        "variants": [
            {
                "variant": v.variant,
                "units": f"{v.units:,}",
                "observed": format_share(v.observed_share),
                "expected": format_share(v.expected_share),
            }
            for v in result.variants
        ],
        "srm": {"text": format_srm(result.srm), "tone": tone(result.srm.status)},
        "progress": progress_text(result),
        "variant_names": [v.variant for v in result.variants],
        "has_vs": len(result.variants) > 2,
        "metrics": _metrics(result),
        "notes": [f"{m.name}: {m.note}" for m in result.metrics if m.note],
        "charts": {
            "assignment": str(assignment_chart(result)),
            "effects": [str(chart) for chart in effect_charts(result)],
            "timeline": [{"metric": n, "svg": str(c)} for n, c in timeline_charts(result)],
            "latency": str(latency_chart(result)),
        },
        "latency": [
            [s.variant, f"{s.predictions:,}"]
            + [f"{v:.1f} ms" for v in (s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms)]
            for s in result.latency
        ],
        "shadow": [
            {
                "variant": s.variant,
                "summary": shadow_summary(s),
                "columns": list(SHADOW_COLUMNS),
                "rows": shadow_rows(s),
            }
            for s in result.shadow
        ],
        "generated": format_timestamp(p.generated_at),
        "command": f"abflow analyze {result.experiment_key} --format html",
    }


def experiment_view(store: EventStore, key: str, *, store_label: str = "") -> dict[str, Any]:
    """One experiment: its analysis, rollout, audit trail and monitoring, ready to show."""
    stored = store.get_experiment(key)
    result = analyze(store, key, AnalysisOptions(store_label=store_label))
    entries = store.audit_entries(key)
    return {
        "key": key,
        **_result(result),
        "rollout": _rollout(stored.spec, entries),
        "audit": _audit(entries),
        "monitoring": monitoring_view(store, key),
    }
