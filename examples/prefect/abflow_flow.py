"""Example flows: wait for an experiment's verdict, then gate the deploy; tick a rollout.

Run locally (the store from $ABFLOW_STORE_URL, abflow from $ABFLOW_BIN or the PATH):

    python abflow_flow.py gate fraud-model-v2
    python abflow_flow.py tick fraud-model-v2

Exit status 0 when the flow completes, 1 when it fails (a failing gate fails the flow).
"""

from __future__ import annotations

import sys

from abflow_prefect import abflow_analyze, abflow_gate, abflow_rollout_tick, wait_for_verdict
from prefect import flow


@flow(name="abflow-gate")
def gate_flow(experiment: str, require: str = "no-harm", min_units: int = 0) -> dict[str, object]:
    """Report, wait for a verdict, then pass or fail the deploy on the gate."""
    abflow_analyze(experiment)
    wait_for_verdict(experiment, poke_interval_seconds=600.0)
    # A store that cannot be reached is retried; a failing gate is an answer and is not.
    gate = abflow_gate.with_options(retries=2, retry_delay_seconds=60)
    return gate(experiment, require=require, min_units=min_units)


@flow(name="abflow-rollout")
def rollout_flow(experiment: str) -> dict[str, object]:
    """One tick; schedule it hourly with a Prefect deployment (``flow.serve(cron=...)``)."""
    return abflow_rollout_tick(experiment)


def main(argv: list[str]) -> int:
    """``gate EXPERIMENT`` or ``tick EXPERIMENT``: run the flow, 0 when it completes."""
    if len(argv) != 2 or argv[0] not in ("gate", "tick"):
        print("usage: abflow_flow.py gate|tick EXPERIMENT", file=sys.stderr)
        return 2
    chosen = gate_flow if argv[0] == "gate" else rollout_flow
    state = chosen(argv[1], return_state=True)
    print(f"flow {chosen.name} for {argv[1]}: {state.type.value}")
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
