"""The Prefect tasks and example flows, run for real with Prefect's local engine.

Prefect 3.4 runs in its own cached virtual environment with a temporary PREFECT_HOME, no
PREFECT_API_URL (so each run starts Prefect's temporary local server on loopback) and
analytics off; the tasks call the main environment's ``abflow`` through ``$ABFLOW_BIN``
against a store this test writes. Flow and task states are read from Prefect's SQLite
database afterwards.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from abflow_store import build_store

from cached_envs import abflow_bin, ensure_env

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "examples" / "prefect"
RUN_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class FlowRun:
    exit_code: int
    output: str
    flow_state: str | None
    task_states: dict[str, tuple[str, int]]


@dataclass(frozen=True)
class Prefect:
    """The example flow copied into a folder, with the environment it runs in."""

    python: Path
    folder: Path
    env: dict[str, str]

    def run(self, command: str, experiment: str) -> FlowRun:
        """``python abflow_flow.py COMMAND EXPERIMENT``; the flow run as Prefect stored it."""
        done = subprocess.run(
            [str(self.python), "abflow_flow.py", command, experiment],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        with sqlite3.connect(Path(self.env["PREFECT_HOME"]) / "prefect.db") as db:
            latest = db.execute(
                "SELECT id, state_type FROM flow_run ORDER BY created DESC LIMIT 1"
            ).fetchone()
            flow_id, flow_state = latest or (None, None)  # None: the flow never started
            tasks = {
                name.rsplit("-", 1)[0]: (state, runs)
                for name, state, runs in db.execute(
                    "SELECT name, state_type, run_count FROM task_run WHERE flow_run_id = ?",
                    (flow_id,),
                )
            }
        return FlowRun(done.returncode, done.stdout + done.stderr, flow_state, tasks)


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Prefect:
    venv = ensure_env("prefect")
    folder = tmp_path_factory.mktemp("prefect-flows")
    for name in ("abflow_prefect.py", "abflow_flow.py"):
        shutil.copy(EXAMPLES / name, folder / name)
    home = tmp_path_factory.mktemp("prefect-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PREFECT_HOME": str(home),
        "PREFECT_MEMO_STORE_PATH": str(home / "memo_store.toml"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The temporary server gets 20 s to start by default; it took 11-18 s on an idle
        # 2-core machine, and timed out while another orchestrator test ran beside it.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "DO_NOT_TRACK": "1",
        "ABFLOW_BIN": str(abflow_bin()),
        "ABFLOW_STORE_URL": build_store(tmp_path_factory.mktemp("abflow-store")),
    }
    return Prefect(venv / "bin" / "python", folder, env)


def test_a_passing_gate_completes_the_flow(prefect: Prefect) -> None:
    run = prefect.run("gate", "gate-pass")
    assert run.exit_code == 0, run.output[-3000:]
    assert "flow abflow-gate for gate-pass: COMPLETED" in run.output
    assert run.flow_state == "COMPLETED"
    assert run.task_states == {
        "abflow analyze": ("COMPLETED", 1),
        "abflow wait for verdict": ("COMPLETED", 1),
        "abflow gate": ("COMPLETED", 1),
    }
    assert "look 1 at gate-pass: verdict ship" in run.output
    assert run.output.count("- pass ") == 3  # sample ratio, guardrail, primary


def test_a_failing_gate_fails_the_flow_without_a_retry(prefect: Prefect) -> None:
    run = prefect.run("gate", "gate-fail")
    assert run.exit_code == 1
    assert "flow abflow-gate for gate-fail: FAILED" in run.output
    assert run.flow_state == "FAILED"
    assert run.task_states["abflow wait for verdict"] == ("COMPLETED", 1)
    assert run.task_states["abflow gate"] == ("FAILED", 1)  # retries=2, but an answer is final
    assert "AbflowNegative: abflow gate FAILED for gate-fail: guardrail complaints" in run.output


def test_a_tick_starts_the_ramp(prefect: Prefect) -> None:
    run = prefect.run("tick", "ramp")
    assert run.exit_code == 0, run.output[-3000:]
    assert run.task_states == {"abflow rollout tick": ("COMPLETED", 1)}
    assert '"action": "started", "step": 0' in run.output


def test_an_unknown_experiment_fails_as_could_not_answer(prefect: Prefect) -> None:
    run = prefect.run("gate", "no-such-experiment")
    assert run.exit_code == 1
    assert run.flow_state == "FAILED"
    assert run.task_states == {"abflow analyze": ("FAILED", 1)}  # nothing ran after it
    assert "AbflowCouldNotAnswer: abflow could not answer (exit 2):" in run.output
    assert "no-such-experiment" in run.output
