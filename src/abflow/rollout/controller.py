"""The rollout controller: ramp a challenger step by step while its guardrails hold.

``tick`` is meant to run on a schedule (cron, Airflow, an Argo CronWorkflow); each call
looks once and acts at most once:

* not started: open the first step (the challenger gets the first step's share; until
  then a registered plan sends it nothing);
* a guardrail of the plan fails, or the split is broken (SRM): roll back (all traffic to the
  control) when ``auto_rollback``, else hold and say so;
* the live monitor (``abflow monitor``) raises an alarm on the challenger in the current or
  the previous window (drift, skew between variants, quality): hold, or roll back, as the
  plan's ``on_monitor_alarm`` says (``ignore`` to look past it);
* the step has lasted ``min_duration_hours`` and the challenger has ``min_samples`` units:
  open the next step; after the last one, promote when ``auto_promote``, else wait for
  ``abflow rollout promote``;
* otherwise hold, saying what it waits for.

A plan may begin with a shadow step: the challenger serves no one and the spec asks the
gateways to mirror requests to it (``shadow.variants``, sampled by ``shadow.share``). The
tick moves past it only when the ``shadow-no-harm`` gate passes (paired non-inferiority on
the guardrails, :func:`abflow.rollout.gate.shadow_checks`) on at least ``min_samples``
paired requests after ``min_duration_hours``; a shadow worse beyond a margin with
confidence is rolled back (``auto_rollback``), which also stops the copies.

Every move writes a new spec version (so a new phase: analysis never pools two steps) and an
audit entry carrying the evidence: the analysed phase and window, spec hash, units per
variant, each guardrail's effect and interval, and the abflow version. The tick analyses the
events before its own clock, recorded as the evidence's ``until``: ``abflow analyze --phase N
--spec-version V --until UNTIL`` applies that cutoff again later, so events that arrived
after the decision do not change the re-run. A gateway serving the experiment picks the new weights up from
the store.

Promotion is one act with the model registry: when the challenger serves a registry model
(``models:/``) and a registry is given (the CLI always gives the configured one), the
control's alias of that model (``champion`` unless the control names another) is moved to the
challenger's version, the decision and its evidence are logged as an MLflow run, and the
audit entry is written; if any of the three fails, the others are undone. A rollback of a
promoted rollout puts the alias back where the promotion found it. Rollbacks during a ramp
never touch the registry: an MLflow outage cannot hold back a safety move.

It fails safe: a number the analysis cannot compute is recorded as null and never stops a
tick; a guardrail whose control value is 0 is judged on the absolute difference (by analysis:
the controller reads the status from the result), so harm seen in the challenger's arm only
rolls it back; and a step never lowers the challenger's share, so no unit that saw it is
moved back to the control (only a rollback does that).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from abflow.analysis import AnalysisOptions, ExperimentResult, analyze
from abflow.errors import AbflowError, InvalidArgumentError, RegistryError
from abflow.monitoring.monitor import challenger_alarms
from abflow.rollout.gate import GatePolicy, Requirement, evaluate_gate, shadow_harms
from abflow.rollout.guardrails import GuardrailCheck, judge_guardrails
from abflow.rollout.plan import (
    ROLLOUT_ACTIONS,
    RolloutState,
    challenger_index,
    check_full_coverage,
    check_plan,
    check_startable,
    plan_of,
    state_from_audit,
    step_weights,
)
from abflow.security.audit import json_safe
from abflow.spec import ExperimentSpec, challenger_share, is_mirrored, with_mirrored
from abflow.store import EventStore

if TYPE_CHECKING:
    from abflow.registry.promotion import AliasMove, MlflowPromotionRegistry

__all__ = [
    "RolloutStatus",
    "TickResult",
    "promote",
    "reset",
    "rollback",
    "rollout_status",
    "tick",
]

Action = Literal["started", "advanced", "held", "rolled_back", "promoted", "finished", "reset"]
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """A rollout as it stands, for ``abflow rollout status``."""

    experiment_key: str
    state: RolloutState
    steps: list[float]
    challenger: str
    weights: list[float]
    phase: int
    phase_started_at: float


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did, and why."""

    experiment_key: str
    action: Action
    step: int | None
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


Analyse = Callable[[EventStore, ExperimentSpec, int, float], ExperimentResult]
"""(store, spec, phase, until): the analysis of ``phase`` on the events before ``until``."""


def _analyse(store: EventStore, spec: ExperimentSpec, phase: int, until: float) -> ExperimentResult:
    return analyze(store, spec, AnalysisOptions(phase=phase, until=until, timeline=False))


def rollout_status(store: EventStore, key: str) -> RolloutStatus:
    """The plan, the stage and the live weights of experiment ``key``'s rollout."""
    stored = store.get_experiment(key)
    plan = plan_of(stored.spec)
    phase = store.current_phase(key)
    return RolloutStatus(
        experiment_key=key,
        state=state_from_audit(store.audit_entries(key)),
        steps=[step.traffic for step in plan.steps],
        challenger=stored.spec.variant_names[challenger_index(stored.spec)],
        weights=stored.spec.effective_weights,
        phase=phase.phase,
        phase_started_at=phase.started_at,
    )


def tick(
    store: EventStore,
    key: str,
    *,
    actor: str = "rollout-controller",
    now: float | None = None,
    analyse: Analyse = _analyse,
    registry: MlflowPromotionRegistry | None = None,
) -> TickResult:
    """Look at experiment ``key`` once and take at most one step of its rollout.

    With ``registry``, an automatic promotion also moves the registry alias (see above).
    """
    now = time.time() if now is None else now
    spec = store.get_experiment(key).spec
    plan = check_plan(spec)
    state = state_from_audit(store.audit_entries(key))
    if state.is_final:
        return TickResult(
            key, "finished", state.step, [f"the rollout was {state.stage.replace('_', ' ')}"]
        )
    check_startable(spec)
    if state.stage == "not_started" or state.step is None:
        return _move(store, spec, state, 0, actor, "started", ["rollout started"], {})
    if state.step >= len(plan.steps):
        count = len(plan.steps)
        msg = (
            f"the rollout of {key!r} is at step {state.step + 1} but the plan now has "
            f"{count} step{'s' if count != 1 else ''}; promote or roll back by hand"
        )
        raise InvalidArgumentError(msg)
    if plan.steps[state.step].shadow:
        return _shadow_tick(store, spec, state, actor, now, analyse, registry)
    if challenger_share(spec) == 0.0:
        stopped = (
            "the challenger's traffic was set to 0 % outside the rollout; the controller will "
            "not send it traffic again: `abflow rollout rollback` ends the rollout"
        )
        return TickResult(key, "held", state.step, [stopped])
    step = plan.steps[state.step]
    phase = store.current_phase(key)
    result = analyse(store, spec, phase.phase, now)
    challenger = spec.variant_names[challenger_index(spec)]
    checks = judge_guardrails(result, plan.guardrails, challenger)
    evidence = _evidence(result, checks, challenger)
    failures = _failures(result, checks)
    if failures:
        if plan.auto_rollback:
            return _finish(store, spec, state, "rolled_back", actor, failures, evidence, registry)
        return TickResult(
            key, "held", state.step, ["guardrails fail, auto_rollback is off", *failures], evidence
        )
    alarms = (
        [] if plan.on_monitor_alarm == "ignore" else challenger_alarms(store, spec, challenger, now)
    )
    if alarms:
        evidence["monitor_alarms"] = alarms
        if plan.on_monitor_alarm == "rollback":
            return _finish(store, spec, state, "rolled_back", actor, alarms, evidence, registry)
        return TickResult(
            key, "held", state.step, ["the live monitor raises an alarm", *alarms], evidence
        )
    elapsed_hours = (now - phase.started_at) / HOUR
    units = evidence["units"].get(evidence["challenger"], 0)
    waiting = []
    if elapsed_hours < step.min_duration_hours:
        waiting.append(f"step has run {elapsed_hours:.1f} of {step.min_duration_hours:g} hours")
    if units < step.min_samples:
        waiting.append(f"challenger has {units:,} of {step.min_samples:,} units")
    waiting += [f"cannot advance: {c.unresolved_harm}" for c in checks if c.unresolved_harm]
    if waiting:
        return TickResult(key, "held", state.step, waiting, evidence)
    reason = f"step {state.step + 1} held for {elapsed_hours:.1f} h with {units:,} challenger units; guardrails hold"
    if state.step + 1 < len(plan.steps):
        return _move(store, spec, state, state.step + 1, actor, "advanced", [reason], evidence)
    if plan.auto_promote:
        reasons = [reason, "auto_promote"]
        return _finish(store, spec, state, "promoted", actor, reasons, evidence, registry)
    return TickResult(
        key,
        "held",
        state.step,
        [reason, "last step done: waiting for `abflow rollout promote`"],
        evidence,
    )


def _shadow_tick(
    store: EventStore,
    spec: ExperimentSpec,
    state: RolloutState,
    actor: str,
    now: float,
    analyse: Analyse,
    registry: MlflowPromotionRegistry | None,
) -> TickResult:
    """The shadow step: advance when the shadow-no-harm gate passes on enough pairs."""
    plan = plan_of(spec)
    step = plan.steps[state.step or 0]
    challenger = spec.variant_names[challenger_index(spec)]
    if not is_mirrored(spec, challenger) or challenger_share(spec) != 0.0:
        stopped = (
            "the shadow step's copies or split were changed outside the rollout; "
            "`abflow rollout rollback` ends the rollout"
        )
        return TickResult(spec.key, "held", state.step, [stopped])
    phase = store.current_phase(spec.key)
    result = analyse(store, spec, phase.phase, now)
    gate = evaluate_gate(
        result, GatePolicy(require=Requirement.shadow_no_harm, variants=(challenger,))
    )
    pairs = next((s.pairs for s in result.shadow if s.variant == challenger), 0)
    evidence = _evidence(result, [], challenger)
    evidence["shadow_pairs"] = pairs
    evidence["shadow_gate"] = [
        {"check": c.check, "passed": c.passed, "detail": c.detail} for c in gate.checks
    ]
    harms = shadow_harms(result, challenger)
    if harms:
        if plan.auto_rollback:
            return _finish(store, spec, state, "rolled_back", actor, harms, evidence, registry)
        return TickResult(
            spec.key, "held", state.step, ["shadow harms, auto_rollback is off", *harms], evidence
        )
    since = max(phase.started_at, state.since if state.since is not None else phase.started_at)
    elapsed_hours = (now - since) / HOUR
    waiting = []
    if elapsed_hours < step.min_duration_hours:
        waiting.append(
            f"shadow step has run {elapsed_hours:.1f} of {step.min_duration_hours:g} hours"
        )
    if pairs < step.min_samples:
        waiting.append(f"shadow has {pairs:,} of {step.min_samples:,} paired requests")
    if waiting:
        return TickResult(spec.key, "held", state.step, waiting, evidence)
    if not gate.passed:
        failed = [f"{c.check}: {c.detail}" for c in gate.failures]
        return TickResult(
            spec.key, "held", state.step, ["shadow-no-harm does not hold yet", *failed], evidence
        )
    reason = (
        f"shadow step held for {elapsed_hours:.1f} h with {pairs:,} paired requests; "
        "shadow-no-harm holds"
    )
    return _move(store, spec, state, (state.step or 0) + 1, actor, "advanced", [reason], evidence)


def promote(
    store: EventStore,
    key: str,
    *,
    actor: str,
    reason: str = "",
    registry: MlflowPromotionRegistry | None = None,
) -> TickResult:
    """Send all traffic to the challenger and end the rollout (audited).

    With ``registry``, the challenger's registry model alias moves too, all or nothing.
    """
    return _end_by_hand(store, key, "promoted", actor, reason or "promoted by hand", registry)


def rollback(
    store: EventStore,
    key: str,
    *,
    actor: str,
    reason: str = "",
    registry: MlflowPromotionRegistry | None = None,
) -> TickResult:
    """Send all traffic back to the control and end the rollout (audited).

    Also after a promotion: then, with ``registry``, the alias the promotion moved goes back.
    """
    return _end_by_hand(store, key, "rolled_back", actor, reason or "rolled back by hand", registry)


def reset(store: EventStore, key: str, *, actor: str, reason: str = "") -> TickResult:
    """After a rollback, let the rollout start over (audited); the next tick opens step 1.

    Traffic stays with the control until then. Typically used once a fixed challenger is
    registered under the same experiment.
    """
    spec = store.get_experiment(key).spec
    plan_of(spec)
    state = state_from_audit(store.audit_entries(key))
    if state.stage != "rolled_back":
        msg = (
            f"only a rolled-back rollout can be reset; the rollout of {key!r} is "
            f"{state.stage.replace('_', ' ')}"
        )
        raise InvalidArgumentError(msg)
    payload = _payload(None, 0.0, [reason or "reset by hand"], {})
    if not _record(store, spec, state, 0.0, "rollout.reset", payload, actor):
        return _moved_meanwhile(spec, None)
    return TickResult(spec.key, "reset", None, [reason or "reset by hand"])


def _end_by_hand(
    store: EventStore,
    key: str,
    action: Literal["rolled_back", "promoted"],
    actor: str,
    reason: str,
    registry: MlflowPromotionRegistry | None,
) -> TickResult:
    # A rollback is the safety command: a tick that moved first is no reason to give up on
    # it. A promotion overtaken by anything stops (someone may have rolled back meanwhile).
    for _ in range(_HAND_ATTEMPTS if action == "rolled_back" else 1):
        spec = store.get_experiment(key).spec
        plan_of(spec)
        state = state_from_audit(store.audit_entries(key))
        undoes_promotion = action == "rolled_back" and state.stage == "promoted"
        if state.is_final and not undoes_promotion:
            msg = f"the rollout of {key!r} is already {state.stage.replace('_', ' ')}"
            raise InvalidArgumentError(msg)
        if action == "promoted":  # rolling back stays possible whatever the coverage
            check_full_coverage(spec)
        result = _finish(store, spec, state, action, actor, [reason], {}, registry)
        if result.action == action:
            return result
    return result


_HAND_ATTEMPTS = 5
"""How often a rollback by hand looks again when a controller moved the rollout between its
read and its write (each look re-checks the state)."""


def _with_share(spec: ExperimentSpec, share: float, *, mirrored: bool) -> ExperimentSpec:
    """The spec with the challenger at ``share``, and mirrored only during a shadow step."""
    weights = step_weights(spec, share) if 0 < share < 1 else _endpoint(spec, share)
    challenger = spec.variant_names[challenger_index(spec)]
    shadow = with_mirrored(spec, challenger, on=mirrored)
    return spec.model_copy(update={"weights": weights, "shadow": shadow})


def _endpoint(spec: ExperimentSpec, share: float) -> list[float]:
    weights = [0.0] * len(spec.variants)
    weights[challenger_index(spec) if share >= 1 else 0] = 1.0
    return weights


def _record(
    store: EventStore,
    spec: ExperimentSpec,
    seen: RolloutState,
    share: float,
    action: str,
    payload: dict[str, Any],
    actor: str,
    *,
    mirrored: bool = False,
) -> bool:
    """Register the new weights and audit the move; False if the rollout moved meanwhile.

    The check and both writes are one store transaction: a tick acting on a state another
    controller (or a person) changed since it looked does nothing, and never half-applies.
    """
    reason = f"{action.removeprefix('rollout.').replace('_', ' ')}: {share:.0%} to the challenger"
    return store.register_if_unchanged(
        _with_share(spec, share, mirrored=mirrored),
        actions=ROLLOUT_ACTIONS,
        last_seq=seen.seq,
        action=action,
        payload=payload,
        reason=reason,
        actor=actor,
    )


def _payload(
    step: int | None, share: float, reasons: list[str], evidence: dict[str, Any]
) -> dict[str, Any]:
    payload: dict[str, Any] = json_safe(
        {"step": step, "share": share, "reasons": reasons, "evidence": evidence}
    )
    return payload


def _moved_meanwhile(spec: ExperimentSpec, step: int | None) -> TickResult:
    return TickResult(spec.key, "held", step, ["the rollout moved meanwhile (another controller?)"])


def _move(
    store: EventStore,
    spec: ExperimentSpec,
    seen: RolloutState,
    step: int,
    actor: str,
    action: Action,
    reasons: list[str],
    evidence: dict[str, Any],
) -> TickResult:
    """Open ramp step ``step``, unless that would lower the challenger's share."""
    steps = plan_of(spec).steps
    share, mirrored = steps[step].traffic, steps[step].shadow
    current = challenger_share(spec)
    if current is None or share < current - 1e-9:
        now = "a split of other variants" if current is None else f"{current:.0%}"
        refusal = (
            f"not opening step {step + 1} ({share:.0%} to the challenger): the challenger "
            f"already has {now}, set outside the plan, and lowering it would move units that "
            "saw it back to the control; promote or roll back by hand"
        )
        return TickResult(spec.key, "held", seen.step, [*reasons, refusal], evidence)
    payload = _payload(step, share, reasons, evidence)
    if not _record(store, spec, seen, share, "rollout.step", payload, actor, mirrored=mirrored):
        return _moved_meanwhile(spec, step)
    label = f"step {step + 1} of {len(steps)}: {share:.0%} to the challenger"
    if mirrored:
        label += ", shadow copies of requests"
    return TickResult(spec.key, action, step, [*reasons, label], evidence)


def _finish(
    store: EventStore,
    spec: ExperimentSpec,
    seen: RolloutState,
    action: Literal["rolled_back", "promoted"],
    actor: str,
    reasons: list[str],
    evidence: dict[str, Any],
    registry: MlflowPromotionRegistry | None = None,
) -> TickResult:
    """End the rollout: all traffic to the control (rolled back) or the challenger.

    With a registry, the alias move, the MLflow decision run and the audit entry happen
    together: whatever fails after the alias moved puts it back and deletes the run.
    """
    share = 1.0 if action == "promoted" else 0.0
    move, notes = _move_alias(store, spec, seen, action, registry)
    reasons = [*reasons, *notes]
    payload = _payload(seen.step, share, reasons, evidence)
    if move is None or registry is None:
        if not _record(store, spec, seen, share, f"rollout.{action}", payload, actor):
            return _moved_meanwhile(spec, seen.step)
        return TickResult(spec.key, action, seen.step, reasons, evidence)
    run_id: str | None = None
    try:
        run_id = _log_decision(registry, spec, seen, action, actor, reasons, evidence, move)
        payload["registry"] = {**move.as_payload(), "run_id": run_id}
        recorded = _record(store, spec, seen, share, f"rollout.{action}", payload, actor)
    except Exception as exc:
        _undo(registry, move, run_id, exc)
        raise
    if not recorded:
        _undo(registry, move, run_id, None)
        return _moved_meanwhile(spec, seen.step)
    return TickResult(spec.key, action, seen.step, reasons, evidence)


def _move_alias(
    store: EventStore,
    spec: ExperimentSpec,
    seen: RolloutState,
    action: Literal["rolled_back", "promoted"],
    registry: MlflowPromotionRegistry | None,
) -> tuple[AliasMove | None, list[str]]:
    """Move (promotion) or restore (rollback of a promotion) the registry alias, with notes."""
    from abflow.registry.promotion import promotion_target

    if registry is None:  # a library caller that passes no registry: traffic only
        return None, []
    if action == "rolled_back":
        promoted = _promotion_entry(store, spec.key, seen)
        if promoted is None:
            return None, []
        where = f"{promoted['name']}@{promoted['alias']}"
        restored = registry.restore(promoted)
        if restored is None:
            return None, [f"{where} was moved since the promotion: left as it is"]
        return restored, [f"{where}: version {restored.previous_version} → {_label(restored)}"]
    control = spec.variants[0].model
    challenger = spec.variants[challenger_index(spec)].model
    target = promotion_target(control, challenger)
    if target is None:
        return None, [f"{challenger} is not a registry model (models:/): no alias moved"]
    move = registry.promote(target, spec.key)
    return move, [
        f"{move.name}@{move.alias}: version {move.previous_version or 'none'} → {_label(move)}"
    ]


def _label(move: AliasMove) -> str:
    return move.version or "none (alias removed)"


def _promotion_entry(store: EventStore, key: str, seen: RolloutState) -> dict[str, Any] | None:
    """The registry part of the promotion a rollback undoes, if it moved an alias."""
    if seen.stage != "promoted":
        return None
    for entry in reversed(store.audit_entries(key)):
        if entry.seq == seen.seq:
            found = entry.payload.get("registry")
            return dict(found) if isinstance(found, dict) else None
    return None


def _log_decision(
    registry: MlflowPromotionRegistry,
    spec: ExperimentSpec,
    seen: RolloutState,
    action: str,
    actor: str,
    reasons: list[str],
    evidence: dict[str, Any],
    move: AliasMove,
) -> str:
    guardrails = {
        str(check["metric"]): {
            "effect": check["effect"],
            "ci_low": check["ci"][0],
            "ci_high": check["ci"][1],
        }
        for check in evidence.get("guardrails", [])
    }
    params = {
        "actor": actor,
        "step": seen.step,
        "challenger": spec.variant_names[challenger_index(spec)],
        "registry": move.as_payload(),
        "evidence": {k: v for k, v in evidence.items() if k not in ("units", "guardrails")},
        "guardrail_status": {str(c["metric"]): c["status"] for c in evidence.get("guardrails", [])},
    }
    metrics = {"units": evidence.get("units", {}), "guardrail": guardrails}
    return registry.log_decision(
        spec.key,
        action,
        reason="; ".join(reasons),
        phase=evidence.get("phase"),
        params=params,
        metrics=metrics,
    )


def _undo(
    registry: MlflowPromotionRegistry,
    move: AliasMove,
    run_id: str | None,
    cause: BaseException | None,
) -> None:
    """Put the alias back and drop the decision run after the store did not take the move."""
    try:
        registry.undo(move)
    except AbflowError as exc:
        msg = (
            f"the decision was not recorded, and {move.name}@{move.alias} could not be put "
            f"back to version {move.previous_version or 'none'}: {exc}; set it by hand with "
            "`abflow models promote`"
        )
        raise RegistryError(msg) from cause or exc
    if run_id is None:
        return
    try:
        registry.discard_decision(run_id)
    except AbflowError as exc:
        msg = (
            f"the decision was not recorded and {move.name}@{move.alias} is back at version "
            f"{move.previous_version or 'none'}, but its MLflow run {run_id} could not be "
            f"deleted: {exc}"
        )
        raise RegistryError(msg) from cause or exc


def _failures(result: ExperimentResult, checks: list[GuardrailCheck]) -> list[str]:
    out = []
    if result.srm.is_mismatch:
        out.append(f"sample ratio mismatch (p = {result.srm.p_value:.2g}): the split is broken")
    for check in checks:
        if check.status == "fail":
            out.append(f"guardrail {check.metric} fails: {check.describe()}")
    return out


def _evidence(
    result: ExperimentResult, checks: list[GuardrailCheck], challenger: str
) -> dict[str, Any]:
    """What a later reader needs to reproduce the decision (undefined numbers are null)."""
    provenance = result.provenance
    evidence: dict[str, Any] = json_safe(
        {
            "phase": result.phase,
            "spec_hash": provenance.spec_hash,
            "window": [provenance.window_start, provenance.window_end],
            "until": provenance.until,
            "abflow_version": provenance.abflow_version,
            "challenger": challenger,
            "units": {count.variant: count.units for count in result.variants},
            "srm_p_value": result.srm.p_value,
            "guardrails": [check.evidence() for check in checks],
        }
    )
    return evidence
