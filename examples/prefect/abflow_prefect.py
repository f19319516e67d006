"""abflow for Prefect: tasks for gate, rollout tick, analyze and waiting for a verdict.

The boundary is the ``abflow`` command line, run as a subprocess: this module imports nothing
from abflow (only Prefect and the standard library), so it can be copied into any flow
project without putting abflow's dependencies into Prefect's environment. The executable is
the ``abflow_bin`` argument, else ``$ABFLOW_BIN``, else ``abflow`` on the ``PATH``; the store
is ``$ABFLOW_STORE_URL`` or the ``store`` argument (a URL or a secret reference such as
``env:ABFLOW_STORE_URL``).

Exit codes map to task states: 0 returns the command's JSON; 1 (a failing gate, a rollback)
raises :class:`AbflowNegative`, which the tasks never retry; 2 (abflow could not answer)
raises :class:`AbflowCouldNotAnswer`, which ``retries`` on the task may retry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger, task

__all__ = [
    "AbflowCouldNotAnswer",
    "AbflowError",
    "AbflowNegative",
    "abflow_analyze",
    "abflow_gate",
    "abflow_rollout_tick",
    "run_abflow",
    "wait_for_verdict",
]

NEGATIVE = 1
DEFAULT_TIMEOUT_SECONDS = 1800.0


class AbflowError(RuntimeError):
    """Every failure these tasks raise."""


class AbflowNegative(AbflowError):
    """abflow answered no (exit 1): a failing gate or a rolled-back rollout. Never retried."""


class AbflowCouldNotAnswer(AbflowError):
    """abflow could not look (exit 2, no executable, a timeout). Retryable."""


def _retry_unless_negative(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition for Prefect: a negative answer is final."""
    try:
        state.result()
    except AbflowNegative:
        return False
    except Exception:
        return True
    return True


def find_abflow(explicit: str | None = None) -> str:
    """The abflow executable: argument, ``$ABFLOW_BIN``, then ``PATH``."""
    found = explicit or os.environ.get("ABFLOW_BIN") or shutil.which("abflow")
    if not found:
        msg = "abflow executable not found: set $ABFLOW_BIN or pass abflow_bin"
        raise AbflowCouldNotAnswer(msg)
    return found


def run_abflow(
    args: Sequence[str],
    *,
    abflow_bin: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[int, dict[str, Any]]:
    """Run ``abflow ARGS`` (which must print JSON); return (exit code 0 or 1, the JSON)."""
    command = [find_abflow(abflow_bin), *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_seconds, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"abflow could not answer: {' '.join(args[:2])}: {exc}"
        raise AbflowCouldNotAnswer(msg) from exc
    if done.returncode not in (0, NEGATIVE):
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        msg = f"abflow could not answer (exit {done.returncode}): {lines[-1] if lines else ''}"
        raise AbflowCouldNotAnswer(msg)
    try:
        parsed = json.loads(done.stdout)
    except ValueError as exc:
        msg = f"abflow {' '.join(args[:2])} printed no JSON: {done.stdout[:200]!r}"
        raise AbflowCouldNotAnswer(msg) from exc
    return done.returncode, parsed


def _store(store: str | None) -> list[str]:
    return ["--store", store] if store else []


def _phase(phase: int | None) -> list[str]:
    return ["--phase", str(phase)] if phase is not None else []


@task(name="abflow gate", retry_condition_fn=_retry_unless_negative)
def abflow_gate(
    experiment: str,
    *,
    require: str = "no-harm",
    min_units: int = 0,
    variants: Sequence[str] = (),
    phase: int | None = None,
    store: str | None = None,
    abflow_bin: str | None = None,
) -> dict[str, Any]:
    """``abflow gate``: the gate's JSON when it passes; :class:`AbflowNegative` when it fails."""
    args = ["gate", experiment, "--format", "json", "--require", require]
    args += ["--min-units", str(min_units), *_store(store), *_phase(phase)]
    for variant in variants:
        args += ["--variant", variant]
    code, result = run_abflow(args, abflow_bin=abflow_bin)
    logger = get_run_logger()
    for check in result.get("checks", []):
        mark = "pass" if check["passed"] else "FAIL"
        logger.info("%s %s %s: %s", mark, check["check"], check["variant"], check["detail"])
    if code == NEGATIVE or not result.get("passed"):
        failed = [c for c in result.get("checks", []) if not c["passed"]]
        reasons = "; ".join(f"{c['check']} ({c['variant'] or '-'}): {c['detail']}" for c in failed)
        msg = f"abflow gate FAILED for {experiment}: {reasons or 'see the log'}"
        raise AbflowNegative(msg)
    return result


@task(name="abflow rollout tick", retry_condition_fn=_retry_unless_negative)
def abflow_rollout_tick(
    experiment: str,
    *,
    store: str | None = None,
    actor: str = "prefect",
    fail_on_rollback: bool = True,
    abflow_bin: str | None = None,
) -> dict[str, Any]:
    """``abflow rollout tick``: the decision; a rollback raises unless ``fail_on_rollback``."""
    args = ["rollout", "tick", experiment, "--format", "json", "--actor", actor, *_store(store)]
    code, decision = run_abflow(args, abflow_bin=abflow_bin)
    get_run_logger().info("rollout tick %s: %s", experiment, json.dumps(decision))
    if code == NEGATIVE and fail_on_rollback:
        msg = f"abflow rolled back {experiment}: {json.dumps(decision)}"
        raise AbflowNegative(msg)
    return decision


def analysis_summary(
    experiment: str, phase: int | None, store: str | None, abflow_bin: str | None
) -> dict[str, Any]:
    """The part of ``abflow analyze --format json`` a flow branches on."""
    args = ["analyze", experiment, "--format", "json", *_store(store), *_phase(phase)]
    _, result = run_abflow(args, abflow_bin=abflow_bin)
    return {key: result.get(key) for key in ("experiment_key", "phase", "decision", "progress")}


@task(name="abflow analyze")
def abflow_analyze(
    experiment: str,
    *,
    phase: int | None = None,
    store: str | None = None,
    abflow_bin: str | None = None,
) -> dict[str, Any]:
    """``abflow analyze``: ``experiment_key``, ``phase``, ``decision`` and ``progress``."""
    summary = analysis_summary(experiment, phase, store, abflow_bin)
    get_run_logger().info("analyze %s: %s", experiment, summary["decision"]["summary"])
    return summary


@task(name="abflow wait for verdict")
def wait_for_verdict(
    experiment: str,
    *,
    verdicts: Sequence[str] = ("ship", "keep_control", "invalid"),
    poke_interval_seconds: float = 600.0,
    max_pokes: int = 2016,
    phase: int | None = None,
    store: str | None = None,
    abflow_bin: str | None = None,
) -> dict[str, Any]:
    """Analyse until the verdict is one of ``verdicts``, at most ``max_pokes`` times.

    The default waits up to two weeks, one look every ten minutes. Raises
    :class:`AbflowNegative` when the wait runs out, so the flow fails visibly.
    """
    logger = get_run_logger()
    for poke in range(1, max_pokes + 1):
        summary = analysis_summary(experiment, phase, store, abflow_bin)
        verdict = summary["decision"]["verdict"]
        logger.info("look %d at %s: verdict %s", poke, experiment, verdict)
        if verdict in verdicts:
            return summary
        if poke < max_pokes:
            time.sleep(poke_interval_seconds)
    msg = f"no verdict in {list(verdicts)} for {experiment} after {max_pokes} looks"
    raise AbflowNegative(msg)
