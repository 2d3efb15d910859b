"""Fault injection: clients that retry get every run exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import NotebookTask, RunResultState, SubmitTask

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook


@pytest.fixture
def faulty(workspace: LocalWorkspace) -> LocalWorkspace:
    auth = {"Authorization": f"Bearer {workspace.token}"}
    url = workspace.host + "/api/2.0/local/admin/faults"
    assert requests.post(url, json={"faults": "429=0.15,503=0.15", "seed": 7}, headers=auth).ok
    yield workspace
    assert requests.post(url, json={"faults": "none"}, headers=auth).json() == {"faults": "none"}


def test_twenty_submit_and_wait_cycles_under_30_percent_faults(faulty: LocalWorkspace, client: WorkspaceClient,
                                                              tmp_path: Path) -> None:
    path = upload_notebook(client, "/Users/me/count_each",
                           'open(dbutils.widgets.get("f"), "a").write(dbutils.widgets.get("i") + "\\n")\n'
                           'dbutils.notebook.exit(dbutils.widgets.get("i"))\n')
    log = tmp_path / "executions.txt"

    def cycle(i: int) -> tuple[int, RunResultState, str]:
        task = SubmitTask(task_key="t", existing_cluster_id="local",
                          notebook_task=NotebookTask(notebook_path=path, base_parameters={"f": str(log), "i": str(i)}))
        run = client.jobs.submit(run_name=f"c{i}", tasks=[task]).result(timeout=timedelta(minutes=2))
        result = client.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result
        return run.run_id, run.state.result_state, result

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(cycle, range(20)))

    assert len({run_id for run_id, _, _ in outcomes}) == 20
    assert all(state == RunResultState.SUCCESS for _, state, _ in outcomes)
    assert [result for _, _, result in outcomes] == [str(i) for i in range(20)]
    assert sorted(log.read_text().split()) == sorted(str(i) for i in range(20))  # each executed once


def test_dropped_connections_are_survivable(workspace: LocalWorkspace) -> None:
    auth = {"Authorization": f"Bearer {workspace.token}"}
    url = workspace.host + "/api/2.0/local/admin/faults"
    requests.post(url, json={"faults": "reset=1"}, headers=auth)
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(workspace.host + "/api/2.0/secrets/scopes/list", headers=auth)
    finally:
        requests.post(url, json={"faults": "none"}, headers=auth)
    assert requests.get(workspace.host + "/api/2.0/secrets/scopes/list", headers=auth).ok


def test_bad_fault_spec_is_a_clear_400(workspace: LocalWorkspace) -> None:
    response = requests.post(workspace.host + "/api/2.0/local/admin/faults", json={"faults": "418=0.5"},
                             headers={"Authorization": f"Bearer {workspace.token}"})
    assert response.status_code == 400 and "418" in response.json()["message"]
