"""The legacy databricks-cli 0.18 RunsApi: API 2.0, the single-task form, `text/json` on every call."""

from __future__ import annotations

import time
import warnings

from databricks.sdk import WorkspaceClient

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from databricks_cli.runs.api import RunsApi
    from databricks_cli.sdk import ApiClient


def test_legacy_cli_submits_gets_and_reads_output(workspace: LocalWorkspace, client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/legacy",
                           'dbutils.notebook.exit("rows=" + dbutils.widgets.get("rows"))\n')
    api_client = ApiClient(host=workspace.host, token=workspace.token)
    api_client.url = f"{workspace.host}/api/"  # the CLI drops the port from the host (databricks-cli #578)
    runs = RunsApi(api_client)

    run_id = runs.submit_run({
        "run_name": "legacy", "existing_cluster_id": "local",
        "notebook_task": {"notebook_path": path, "base_parameters": {"rows": 42}},
    })["run_id"]
    deadline = time.monotonic() + 30
    run = runs.get_run(run_id)
    while run["state"]["life_cycle_state"] not in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
        assert time.monotonic() < deadline, run["state"]
        time.sleep(0.1)
        run = runs.get_run(run_id)

    assert run["state"]["result_state"] == "SUCCESS"
    assert run["task"]["notebook_task"]["notebook_path"] == path  # the 2.0 single-task shape
    assert run["cluster_spec"]["existing_cluster_id"] == "local"
    output = runs.get_run_output(run_id)  # the parent id works on 2.0 for a single-task run
    assert output["notebook_output"]["result"] == "rows=42"
    assert runs.cancel_run(run_id) == {}
