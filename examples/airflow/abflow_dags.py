"""Example DAGs: a rollout that ticks every hour, and a gate that waits for a verdict.

Copy this file and ``abflow_airflow.py`` into the DAGs folder. The experiment comes from the
run's conf (``{"experiment": "fraud-model-v2"}``) or the params default; the store from
``$ABFLOW_STORE_URL`` on the worker; the executable from ``$ABFLOW_BIN`` or the Variable
``abflow_bin``.
"""

from __future__ import annotations

import datetime as dt

from abflow_airflow import (
    AbflowAnalyzeOperator,
    AbflowGateOperator,
    AbflowRolloutTickOperator,
    AbflowVerdictSensor,
)
from airflow import DAG

EXPERIMENT = "{{ params.experiment }}"
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # noqa: UP017 - Airflow on Python < 3.11

with DAG(
    dag_id="abflow_rollout",
    schedule="@hourly",
    start_date=START,
    catchup=False,
    max_active_runs=1,  # one tick at a time: a tick reads the state the previous one wrote
    params={"experiment": "fraud-model-v2"},
    tags=["abflow"],
) as rollout_dag:
    AbflowRolloutTickOperator(task_id="tick", experiment=EXPERIMENT)

with DAG(
    dag_id="abflow_gate",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"experiment": "fraud-model-v2"},
    tags=["abflow"],
) as gate_dag:
    analyze = AbflowAnalyzeOperator(task_id="analyze", experiment=EXPERIMENT)
    verdict = AbflowVerdictSensor(
        task_id="wait_for_verdict",
        experiment=EXPERIMENT,
        poke_interval=600,
        timeout=14 * 24 * 3600,
        mode="reschedule",
        retries=3,  # a store that cannot be reached is retried; a verdict is not
    )
    gate = AbflowGateOperator(task_id="gate", experiment=EXPERIMENT, require="no-harm")
    analyze >> verdict >> gate
