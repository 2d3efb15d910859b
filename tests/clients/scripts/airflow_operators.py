"""Airflow's Databricks operators, unchanged, against the workspace at $DATABRICKS_HOST.

Run in the Airflow venv (tests/clients/venvs.py): `python airflow_operators.py SCENARIO NOTEBOOK...`.
The connection comes from AIRFLOW_CONN_DATABRICKS_DEFAULT, set here from DATABRICKS_HOST/TOKEN the way
a user would set it. Prints one JSON line with what the scenario observed; exits non-zero on failure.
"""

import json
import os
import sys
import time
from urllib.parse import urlsplit

host = urlsplit(os.environ["DATABRICKS_HOST"])
os.environ["AIRFLOW_CONN_DATABRICKS_DEFAULT"] = json.dumps({
    "conn_type": "databricks", "host": host.hostname, "port": host.port, "schema": host.scheme,
    "password": os.environ["DATABRICKS_TOKEN"]})

from airflow.providers.databricks.hooks.databricks import DatabricksHook  # noqa: E402
from airflow.providers.databricks.operators.databricks import (  # noqa: E402
    DatabricksCreateJobsOperator,
    DatabricksNotebookOperator,
    DatabricksRunNowOperator,
    DatabricksSubmitRunOperator,
    DatabricksTaskOperator,
)
from airflow.sdk import DAG  # noqa: E402
from airflow.sdk.exceptions import AirflowException  # noqa: E402

FAST = {"polling_period_seconds": 1, "do_xcom_push": False}


def notebook_task(key, path):
    return {"task_key": key, "existing_cluster_id": "local", "notebook_task": {"notebook_path": path}}


def submit(ok):
    op = DatabricksSubmitRunOperator(task_id="submit", json={
        "run_name": "airflow submit", "existing_cluster_id": "local", "notebook_task": {"notebook_path": ok}},
        **FAST)
    op.execute({})
    return {"run_id": op.run_id}


def notebook(ok):
    with DAG("airflow_notebook", schedule=None):
        op = DatabricksNotebookOperator(task_id="nb", notebook_path=ok, source="WORKSPACE",
                                        existing_cluster_id="local", **FAST)
    op.execute({})
    return {"run_id": op.databricks_run_id, "task": op._get_current_databricks_task()["task_key"]}


def task(ok):
    with DAG("airflow_task", schedule=None):
        op = DatabricksTaskOperator(task_id="tk", existing_cluster_id="local", **FAST,
                                    task_config={"notebook_task": {"notebook_path": ok, "source": "WORKSPACE"}})
    op.execute({})
    return {"run_id": op.databricks_run_id, "task": op._get_current_databricks_task()["task_key"]}


def repair(fails_once):
    hook = DatabricksHook()
    job_id = hook.create_job({"name": "airflow repair", "tasks": [notebook_task("flaky", fails_once)]})
    op = DatabricksRunNowOperator(task_id="run", job_id=job_id, repair_run=True, **FAST)
    try:
        op.execute({})
    except AirflowException as error:
        # provider 7.23 repairs, waits for the repaired run, and then raises the first attempt's error anyway
        print("operator raised after its repair:", error, file=sys.stderr)
    run = hook.get_run(op.run_id)
    history = hook._do_api_call(("GET", "2.2/jobs/runs/get"), {"run_id": op.run_id, "include_history": True})
    return {"result": run["state"]["result_state"], "history": [h["type"] for h in history["repair_history"]]}


def cancel_previous(sleeps):
    hook = DatabricksHook()
    job_id = hook.create_job({"name": "airflow cancel", "max_concurrent_runs": 5,
                              "tasks": [notebook_task("sleep", sleeps)]})
    first = hook.run_now({"job_id": job_id})
    op = DatabricksRunNowOperator(task_id="again", job_id=job_id, cancel_previous_runs=True,
                                  wait_for_termination=False, **FAST)
    op.execute({})
    deadline = time.monotonic() + 60
    while hook.get_run_state(first).life_cycle_state != "TERMINATED" and time.monotonic() < deadline:
        time.sleep(0.5)
    state = hook.get_run_state(first)
    hook.cancel_run(op.run_id)
    return {"first": state.result_state, "second_is_new": op.run_id != first}


def create_twice(ok, other):
    ids = []
    for path in (ok, other):
        op = DatabricksCreateJobsOperator(task_id="create", json={"name": "airflow created",
                                          "tasks": [notebook_task("only", path)]}, do_xcom_push=False)
        ids.append(op.execute({}))
    settings = DatabricksHook()._do_api_call(("GET", "2.2/jobs/get"), {"job_id": ids[-1]})["settings"]
    return {"ids": ids, "path": settings["tasks"][0]["notebook_task"]["notebook_path"]}


if __name__ == "__main__":
    scenario, *paths = sys.argv[1:]
    print(json.dumps(globals()[scenario](*paths)))
