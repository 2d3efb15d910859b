"""Airflow's Databricks provider, unchanged, in its own venv, against a live local workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient

from aml_databricks.workspace import LocalWorkspace
from tests.clients.requirements import AIRFLOW
from tests.clients.venvs import client_venv, run_client
from tests.fixtures_workspace import upload_notebook

pytestmark = [pytest.mark.clients, pytest.mark.subprocess]


@pytest.fixture(scope="module")
def venv() -> Path:
    return client_venv("airflow", AIRFLOW)


def airflow(venv: Path, workspace: LocalWorkspace, scenario: str, *paths: str) -> dict[str, Any]:
    done = run_client(venv, "airflow_operators.py",
                      {"DATABRICKS_HOST": workspace.host, "DATABRICKS_TOKEN": workspace.token}, scenario, *paths)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def notebooks(client: WorkspaceClient, workspace: LocalWorkspace) -> dict[str, str]:
    flag = workspace.data_dir / "airflow-flaky-ran"
    fails_once = (f'import os\nif not os.path.exists("{flag}"):\n    open("{flag}", "w").close()\n'
                  '    raise RuntimeError("first attempt fails")\n')
    return {
        "ok": upload_notebook(client, "/Airflow/ok", 'dbutils.notebook.exit("ok")\n'),
        "other": upload_notebook(client, "/Airflow/other", 'dbutils.notebook.exit("other")\n'),
        "fails_once": upload_notebook(client, "/Airflow/fails_once", fails_once),
        "sleeps": upload_notebook(client, "/Airflow/sleeps", "import time\ntime.sleep(120)\n"),
    }


def test_submit_run_operator(venv: Path, workspace: LocalWorkspace, notebooks: dict[str, str],
                             client: WorkspaceClient) -> None:
    seen = airflow(venv, workspace, "submit", notebooks["ok"])
    run = client.jobs.get_run(seen["run_id"])
    assert run.state.result_state.value == "SUCCESS" and run.tasks[0].task_key == "airflow submit"


def test_notebook_operator_finds_its_task(venv: Path, workspace: LocalWorkspace, notebooks: dict[str, str]) -> None:
    seen = airflow(venv, workspace, "notebook", notebooks["ok"])
    assert seen["task"]  # the operator found its own task in runs/get and watched it to SUCCESS


def test_task_operator_finds_its_task(venv: Path, workspace: LocalWorkspace, notebooks: dict[str, str]) -> None:
    seen = airflow(venv, workspace, "task", notebooks["ok"])
    assert seen["task"]


def test_run_now_with_repair_run(venv: Path, workspace: LocalWorkspace, notebooks: dict[str, str]) -> None:
    seen = airflow(venv, workspace, "repair", notebooks["fails_once"])
    assert seen == {"result": "SUCCESS", "history": ["ORIGINAL", "REPAIR"]}


def test_run_now_cancels_previous_runs(venv: Path, workspace: LocalWorkspace, notebooks: dict[str, str]) -> None:
    seen = airflow(venv, workspace, "cancel_previous", notebooks["sleeps"])
    assert seen == {"first": "CANCELED", "second_is_new": True}


def test_create_jobs_operator_twice_resets_the_job(venv: Path, workspace: LocalWorkspace,
                                                   notebooks: dict[str, str]) -> None:
    seen = airflow(venv, workspace, "create_twice", notebooks["ok"], notebooks["other"])
    assert seen["ids"][0] == seen["ids"][1] and seen["path"] == notebooks["other"]
