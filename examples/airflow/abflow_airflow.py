"""abflow for Apache Airflow: operators for gate, rollout tick and analyze, and a verdict sensor.

The boundary is the ``abflow`` command line, run as a subprocess: this module imports nothing
from abflow (only Airflow and the standard library), so it can be copied into any Airflow
deployment, whose pinned packages abflow would otherwise fight over. abflow lives in its own
virtual environment or image; the operators find its executable, in this order, from the
``abflow_bin`` argument, the Airflow Variable ``abflow_bin``, the environment variable
``ABFLOW_BIN``, then ``abflow`` on the ``PATH``.

Exit codes map to task states: 0 succeeds (the command's JSON is the XCom value); 1 is a
negative answer (a failing gate, a rolled-back rollout) and fails the task at once, without
retries, with the failed checks as the reason; 2 means abflow could not answer (store
unreachable, unknown experiment, bad arguments) and fails the task so that its ``retries``
apply.

The store is ``$ABFLOW_STORE_URL`` in the worker's environment, or the ``store`` argument (a
URL or a secret reference such as ``env:ABFLOW_STORE_URL`` or ``vault:…``: prefer a reference,
so no password lands in the rendered task arguments).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from airflow.exceptions import AirflowException, AirflowFailException

try:  # Airflow 3 moved the base classes to the task SDK.
    from airflow.sdk import (  # type: ignore[attr-defined]
        BaseOperator,
        BaseSensorOperator,
        PokeReturnValue,
    )
except ImportError:  # Airflow 2.3 and later
    from airflow.models.baseoperator import BaseOperator
    from airflow.sensors.base import BaseSensorOperator, PokeReturnValue

__all__ = [
    "AbflowAnalyzeOperator",
    "AbflowCouldNotAnswer",
    "AbflowGateOperator",
    "AbflowRolloutTickOperator",
    "AbflowVerdictSensor",
    "find_abflow",
    "run_abflow",
]

PASSED, NEGATIVE, COULD_NOT_ANSWER = 0, 1, 2
DEFAULT_TIMEOUT_SECONDS = 1800.0


class AbflowCouldNotAnswer(AirflowException):
    """abflow exited 2: it could not look. Retryable, unlike a negative answer."""


def find_abflow(explicit: str | None = None) -> str:
    """The abflow executable: argument, Variable ``abflow_bin``, ``$ABFLOW_BIN``, ``PATH``."""
    candidate = explicit or _variable("abflow_bin") or os.environ.get("ABFLOW_BIN")
    candidate = candidate or shutil.which("abflow")
    if not candidate:
        msg = "abflow executable not found: set the Variable abflow_bin or $ABFLOW_BIN"
        raise AirflowFailException(msg)
    return candidate


def _variable(name: str) -> str | None:
    try:
        from airflow.models import Variable

        value = Variable.get(name, default_var=None)
    except Exception:  # no metadata database (parsing, tests): the Variable is simply unset
        return None
    return str(value) if value else None


def run_abflow(
    args: Sequence[str],
    *,
    abflow_bin: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[int, str, str]:
    """Run ``abflow ARGS``; return (exit code, stdout, stderr). Exit 2 raises at once."""
    command = [find_abflow(abflow_bin), *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_seconds, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"abflow could not answer: {command[1]} {command[2]}: {exc}"
        raise AbflowCouldNotAnswer(msg) from exc
    if done.returncode not in (PASSED, NEGATIVE):
        reason = _last_line(done.stderr) or _last_line(done.stdout) or "no message"
        msg = f"abflow could not answer (exit {done.returncode}): {reason}"
        raise AbflowCouldNotAnswer(msg)
    return done.returncode, done.stdout, done.stderr


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _json(stdout: str, command: str) -> dict[str, Any]:
    try:
        parsed = json.loads(stdout)
    except ValueError as exc:
        msg = f"abflow {command} printed no JSON: {stdout[:200]!r}"
        raise AbflowCouldNotAnswer(msg) from exc
    if not isinstance(parsed, dict):
        msg = f"abflow {command} printed JSON that is not an object"
        raise AbflowCouldNotAnswer(msg)
    return parsed


def _store_args(store: str | None) -> list[str]:
    return ["--store", store] if store else []


class AbflowGateOperator(BaseOperator):
    """``abflow gate``: succeed when every check passes, fail (no retry) when one fails.

    The XCom value is the gate's JSON (``experiment_key``, ``phase``, ``require``, ``passed``,
    ``checks``). With ``summary_path`` the Markdown table is appended to that file too.
    """

    template_fields: Sequence[str] = ("experiment", "store", "summary_path")

    def __init__(
        self,
        *,
        experiment: str,
        require: str = "no-harm",
        min_units: int = 0,
        variants: Sequence[str] = (),
        phase: int | None = None,
        store: str | None = None,
        summary_path: str | None = None,
        abflow_bin: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.require = require
        self.min_units = min_units
        self.variants = list(variants)
        self.phase = phase
        self.store = store
        self.summary_path = summary_path
        self.abflow_bin = abflow_bin
        self.timeout_seconds = timeout_seconds

    def gate_args(self) -> list[str]:
        """The command line, without the executable."""
        args = ["gate", self.experiment, "--format", "json", "--require", self.require]
        args += ["--min-units", str(self.min_units), *_store_args(self.store)]
        for variant in self.variants:
            args += ["--variant", variant]
        if self.phase is not None:
            args += ["--phase", str(self.phase)]
        if self.summary_path:
            args += ["--summary", self.summary_path]
        return args

    def execute(self, context: Any) -> dict[str, Any]:
        code, stdout, _ = run_abflow(
            self.gate_args(), abflow_bin=self.abflow_bin, timeout_seconds=self.timeout_seconds
        )
        result = _json(stdout, "gate")
        failed = [c for c in result.get("checks", []) if not c.get("passed")]
        for check in result.get("checks", []):
            mark = "pass" if check.get("passed") else "FAIL"
            self.log.info("%s %s %s: %s", mark, check["check"], check["variant"], check["detail"])
        if code == NEGATIVE or not result.get("passed"):
            reasons = "; ".join(
                f"{c['check']} ({c['variant'] or '-'}): {c['detail']}" for c in failed
            )
            msg = f"abflow gate FAILED for {self.experiment}: {reasons or 'see the log'}"
            raise AirflowFailException(msg)
        return result


class AbflowRolloutTickOperator(BaseOperator):
    """``abflow rollout tick``: take at most one ramp step; the XCom value is the decision.

    A rollback (exit 1) fails the task without retry so that the DAG alerts; set
    ``fail_on_rollback=False`` to only log it.
    """

    template_fields: Sequence[str] = ("experiment", "store", "actor")

    def __init__(
        self,
        *,
        experiment: str,
        store: str | None = None,
        actor: str | None = "airflow",
        fail_on_rollback: bool = True,
        abflow_bin: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.store = store
        self.actor = actor
        self.fail_on_rollback = fail_on_rollback
        self.abflow_bin = abflow_bin
        self.timeout_seconds = timeout_seconds

    def execute(self, context: Any) -> dict[str, Any]:
        args = ["rollout", "tick", self.experiment, "--format", "json"]
        args += [*_store_args(self.store), *(["--actor", self.actor] if self.actor else [])]
        code, stdout, _ = run_abflow(
            args, abflow_bin=self.abflow_bin, timeout_seconds=self.timeout_seconds
        )
        decision = _json(stdout, "rollout tick")
        self.log.info("rollout tick %s: %s", self.experiment, json.dumps(decision))
        if code == NEGATIVE and self.fail_on_rollback:
            msg = f"abflow rolled back {self.experiment}: {json.dumps(decision)}"
            raise AirflowFailException(msg)
        return decision


class AbflowAnalyzeOperator(BaseOperator):
    """``abflow analyze --format json``; the XCom value is the result's ``decision`` plus
    ``experiment_key``, ``phase`` and ``progress``. ``report_path`` also writes an HTML report.
    """

    template_fields: Sequence[str] = ("experiment", "store", "report_path")

    def __init__(
        self,
        *,
        experiment: str,
        phase: int | None = None,
        store: str | None = None,
        report_path: str | None = None,
        abflow_bin: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.phase = phase
        self.store = store
        self.report_path = report_path
        self.abflow_bin = abflow_bin
        self.timeout_seconds = timeout_seconds

    def execute(self, context: Any) -> dict[str, Any]:
        summary = analyze(
            self.experiment, self.phase, self.store, self.abflow_bin, self.timeout_seconds
        )
        self.log.info("analyze %s: %s", self.experiment, summary["decision"].get("summary"))
        if self.report_path:
            args = ["analyze", self.experiment, "--format", "html", "-o", self.report_path]
            run_abflow(
                args + _store_args(self.store) + _phase_args(self.phase),
                abflow_bin=self.abflow_bin,
                timeout_seconds=self.timeout_seconds,
            )
        return summary


def _phase_args(phase: int | None) -> list[str]:
    return ["--phase", str(phase)] if phase is not None else []


def analyze(
    experiment: str,
    phase: int | None,
    store: str | None,
    abflow_bin: str | None,
    timeout_seconds: float,
) -> dict[str, Any]:
    """The small part of ``abflow analyze --format json`` a DAG branches on."""
    args = ["analyze", experiment, "--format", "json", *_store_args(store), *_phase_args(phase)]
    _, stdout, _ = run_abflow(args, abflow_bin=abflow_bin, timeout_seconds=timeout_seconds)
    result = _json(stdout, "analyze")
    keys = ("experiment_key", "phase", "decision", "progress")
    return {key: result.get(key) for key in keys}


class AbflowVerdictSensor(BaseSensorOperator):
    """Wait until an experiment's verdict is one of ``verdicts`` (default: anything but
    ``keep_running``, that is ``ship``, ``keep_control`` or ``invalid``).

    Each poke runs ``abflow analyze``; the XCom value is the analysis summary that ended the
    wait. Use ``mode="reschedule"`` for long experiments so the sensor frees its worker slot.
    """

    template_fields: Sequence[str] = ("experiment", "store")

    def __init__(
        self,
        *,
        experiment: str,
        verdicts: Sequence[str] = ("ship", "keep_control", "invalid"),
        phase: int | None = None,
        store: str | None = None,
        abflow_bin: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.verdicts = list(verdicts)
        self.phase = phase
        self.store = store
        self.abflow_bin = abflow_bin
        self.command_timeout_seconds = timeout_seconds

    def poke(self, context: Any) -> bool | PokeReturnValue:
        summary = analyze(
            self.experiment, self.phase, self.store, self.abflow_bin, self.command_timeout_seconds
        )
        verdict = summary["decision"].get("verdict")
        self.log.info("verdict for %s: %s", self.experiment, verdict)
        if verdict not in self.verdicts:
            return False
        return PokeReturnValue(is_done=True, xcom_value=summary)
