"""The Airflow operators and example DAGs, run for real with ``airflow dags test``.

Airflow 2.10 runs in its own cached virtual environment (SQLite metadata database, a temporary
AIRFLOW_HOME, examples and usage analytics off); the operators call the main environment's
``abflow`` through ``$ABFLOW_BIN`` against a store this test writes. Task states and XCom
values are read from Airflow's metadata database afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from abflow_store import PER_ARM, build_store

from cached_envs import abflow_bin, ensure_env

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "examples" / "airflow"
RUN_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Airflow:
    """An AIRFLOW_HOME with the example DAGs and a migrated SQLite metadata database."""

    executable: Path
    home: Path
    env: dict[str, str]

    def dags_test(self, dag_id: str, experiment: str) -> DagRun:
        """``airflow dags test DAG -c {"experiment": ...}``; the run as the database has it."""
        conf = json.dumps({"experiment": experiment})
        done = subprocess.run(
            [str(self.executable), "dags", "test", dag_id, "-c", conf],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        with sqlite3.connect(self.home / "airflow.db") as db:
            [run_id] = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            states = {
                task: (state, tries)
                for task, state, tries in db.execute(
                    "SELECT task_id, state, try_number FROM task_instance"
                    " WHERE dag_id = ? AND run_id = ?",
                    (dag_id, run_id),
                )
            }
            xcoms = {
                task: json.loads(value)
                for task, value in db.execute(
                    "SELECT task_id, value FROM xcom"
                    " WHERE dag_id = ? AND run_id = ? AND key = 'return_value'",
                    (dag_id, run_id),
                )
            }
        return DagRun(done.returncode, done.stdout + done.stderr, states, xcoms)


@dataclass(frozen=True)
class DagRun:
    exit_code: int
    output: str
    states: dict[str, tuple[str, int]]
    xcoms: dict[str, Any]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    venv = ensure_env("airflow")
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    for name in ("abflow_airflow.py", "abflow_dags.py"):
        shutil.copy(EXAMPLES / name, dags / name)
    store = build_store(tmp_path_factory.mktemp("abflow-store"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "1",
        "ABFLOW_BIN": str(abflow_bin()),
        "ABFLOW_STORE_URL": store,
    }
    executable = venv / "bin" / "airflow"
    migrate = subprocess.run(
        [str(executable), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    return Airflow(executable, home, env)


def test_a_passing_gate_succeeds_and_hands_on_its_checks(airflow: Airflow) -> None:
    run = airflow.dags_test("abflow_gate", "gate-pass")
    assert run.exit_code == 0, run.output[-3000:]
    assert run.states == {
        "analyze": ("success", 1),
        "wait_for_verdict": ("success", 1),
        "gate": ("success", 1),
    }
    assert run.xcoms["analyze"]["decision"]["verdict"] == "ship"
    assert run.xcoms["wait_for_verdict"]["progress"]["units"] == 2 * PER_ARM
    gate = run.xcoms["gate"]
    assert (gate["experiment_key"], gate["passed"], gate["require"]) == (
        "gate-pass",
        True,
        "no-harm",
    )
    assert [(c["check"], c["passed"]) for c in gate["checks"]] == [
        ("sample ratio", True),
        ("guardrail complaints", True),
        ("primary purchase", True),
    ]


def test_a_failing_gate_fails_the_task_once_with_its_reason(airflow: Airflow) -> None:
    run = airflow.dags_test("abflow_gate", "gate-fail")
    assert run.exit_code == 1
    assert run.states["wait_for_verdict"] == ("success", 1)  # keep_control ends the wait
    assert run.xcoms["wait_for_verdict"]["decision"]["verdict"] == "keep_control"
    assert run.states["gate"] == ("failed", 1)  # a negative answer is not retried
    assert "gate" not in run.xcoms
    assert (
        "abflow gate FAILED for gate-fail: guardrail complaints (challenger): fail:" in run.output
    )


def test_an_unknown_experiment_fails_as_could_not_answer(airflow: Airflow) -> None:
    run = airflow.dags_test("abflow_gate", "no-such-experiment")
    assert run.exit_code == 1
    assert run.states["analyze"] == ("failed", 1)
    assert run.states["gate"][0] == "upstream_failed"
    assert "AbflowCouldNotAnswer: abflow could not answer (exit 2):" in run.output
    assert "no-such-experiment" in run.output


def test_the_hourly_tick_starts_the_ramp(airflow: Airflow) -> None:
    run = airflow.dags_test("abflow_rollout", "ramp")
    assert run.exit_code == 0, run.output[-3000:]
    assert run.states == {"tick": ("success", 1)}
    tick = run.xcoms["tick"]
    assert (tick["experiment_key"], tick["action"], tick["step"]) == ("ramp", "started", 0)
    again = airflow.dags_test("abflow_rollout", "ramp")  # the step's hour has not passed
    assert again.exit_code == 0, again.output[-3000:]
    assert again.xcoms["tick"]["action"] == "held"
