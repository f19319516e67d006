"""The ramp as a state machine: where a rollout stands and what a step's weights are (pure).

A rollout's state is the last ``rollout.*`` entry of the experiment's audit trail, so the
trail is both the history and the source of truth: every move is recorded with the evidence
that justified it, in the same place the spec versions are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from abflow.errors import InvalidArgumentError
from abflow.routing.ramp import canary_weights
from abflow.spec import ExperimentSpec, RolloutSpec

__all__ = [
    "ROLLOUT_ACTIONS",
    "RolloutState",
    "challenger_index",
    "check_full_coverage",
    "check_plan",
    "check_startable",
    "plan_of",
    "state_from_audit",
    "step_weights",
]

Stage = Literal["not_started", "ramping", "rolled_back", "promoted"]

ROLLOUT_ACTIONS: dict[str, Stage] = {
    "rollout.step": "ramping",
    "rollout.rolled_back": "rolled_back",
    "rollout.promoted": "promoted",
    "rollout.reset": "not_started",
}
"""Audit actions that move a rollout, and the stage each leaves it in."""


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where a rollout stands: its stage, the ramp step (0-based) and since when."""

    stage: Stage
    step: int | None = None
    since: float | None = None
    seq: int | None = None
    """Audit sequence number of the entry that left it here (None: not started)."""

    @property
    def is_final(self) -> bool:
        return self.stage in ("rolled_back", "promoted")


def plan_of(spec: ExperimentSpec) -> RolloutSpec:
    """The spec's rollout plan; InvalidArgumentError naming the experiment if it has none."""
    if spec.rollout is None:
        msg = f"experiment {spec.key!r} has no rollout plan; add a 'rollout' section to its spec"
        raise InvalidArgumentError(msg)
    return spec.rollout


def check_plan(spec: ExperimentSpec) -> RolloutSpec:
    """The plan, if the controller can act on it without breaking a promise it makes.

    Every plan guardrail must be a guardrail metric (only those have a pass/fail status).
    """
    plan = plan_of(spec)
    roles = {metric.name: metric.role for metric in spec.metrics}
    for name in plan.guardrails:
        if roles.get(name, "guardrail") != "guardrail":
            msg = (
                f"rollout.guardrails of {spec.key!r} names {name!r}, which is a {roles[name]} "
                "metric: only guardrail metrics (with a margin) can stop a rollout"
            )
            raise InvalidArgumentError(msg)
    return plan


def check_startable(spec: ExperimentSpec) -> RolloutSpec:
    """The plan, if a rollout of ``spec`` may move traffic: its guardrails can stop it, and
    below full coverage only sticky buckets keep exposed units in place. Shared by the
    controller's every tick and ``abflow validate``."""
    plan = check_plan(spec)
    if spec.sticky is None:
        check_full_coverage(spec)
    return plan


def check_full_coverage(spec: ExperimentSpec) -> None:
    """Refuse to move traffic towards the challenger below full coverage.

    The store routes a spec's weights with GrowthBook's layout (each variant's range starts
    at its cumulative weight and covers ``coverage`` of it), so below full coverage each
    step, and promotion, moves the challenger's window: units that saw the challenger leave
    it. At full coverage every step only moves units from the control to the challenger.
    """
    if spec.coverage < 1:
        msg = (
            f"experiment {spec.key!r} has coverage {spec.coverage:g}: a ramp below full "
            "coverage would move units out of the challenger at every step; set coverage "
            "to 1 and limit who takes part with a condition or a namespace instead"
        )
        raise InvalidArgumentError(msg)


def challenger_index(spec: ExperimentSpec) -> int:
    """Index of the variant that ramps: the plan's challenger, else the second variant."""
    return spec.challenger_index


def step_weights(spec: ExperimentSpec, share: float) -> list[float]:
    """Weights that give the challenger ``share`` and the control the rest (others 0)."""
    return canary_weights(share, n_variants=len(spec.variants), challenger=challenger_index(spec))


def state_from_audit(entries: list[Any]) -> RolloutState:
    """The state the last rollout entry of an experiment's audit trail left it in."""
    for entry in reversed(entries):
        stage = ROLLOUT_ACTIONS.get(entry.action)
        if stage is not None:
            step = entry.payload.get("step")
            return RolloutState(stage, int(step) if step is not None else None, entry.ts, entry.seq)
    return RolloutState("not_started")
