"""prefect-databricks, unchanged, in its own venv, against a live local workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

from aml_databricks.workspace import LocalWorkspace
from tests.clients.requirements import PREFECT
from tests.clients.venvs import client_venv, run_client
from tests.fixtures_workspace import upload_notebook

pytestmark = [pytest.mark.clients, pytest.mark.subprocess]


def test_submit_and_wait_for_completion_flow(client: WorkspaceClient, workspace: LocalWorkspace,
                                             tmp_path: Path) -> None:
    venv = client_venv("prefect", PREFECT)
    source = 'dbutils.notebook.exit("hello " + dbutils.widgets.get("who"))\n'
    notebook = upload_notebook(client, "/Prefect/greets", source)
    # The flow runs on Prefect's own ephemeral API server (SQLite in PREFECT_HOME), which can take more
    # than its default 20 s to start on a loaded machine.
    env = {"DATABRICKS_HOST": workspace.host, "DATABRICKS_TOKEN": workspace.token,
           "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    done = run_client(venv, "prefect_flow.py", env, notebook)

    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["outputs"] == {"prefect": {"result": "hello prefect", "truncated": False}}
    run = client.jobs.get_run(seen["metadata"]["run_id"] if "run_id" in seen["metadata"] else
                              seen["metadata"]["prefect"]["run_id"])
    assert run.state.result_state.value == "SUCCESS"
