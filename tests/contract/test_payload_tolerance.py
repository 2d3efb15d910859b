"""What real clients send and expect back: `null` for every unset field, the task named after the run,
and names stored before requests were checked still listing."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from databricks.sdk import WorkspaceClient

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


def finished(http: httpx.Client, run_id: int, version: str = "2.1") -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        run: dict[str, Any] = http.get(f"/api/{version}/jobs/runs/get", params={"run_id": run_id}).json()
        if run["state"]["life_cycle_state"] in TERMINAL:
            return run
        assert time.monotonic() < deadline, run["state"]
        time.sleep(0.1)


def session(workspace: LocalWorkspace) -> httpx.Client:
    return httpx.Client(base_url=workspace.host, headers={"Authorization": f"Bearer {workspace.token}"}, timeout=30)


def test_null_fields_mean_absent_as_prefect_sends_them(workspace: LocalWorkspace, client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/nulls", 'dbutils.notebook.exit("ok")\n')
    body = {  # prefect-databricks sends every unset field of its models as null
        "run_name": "prefect", "idempotency_token": None, "timeout_seconds": None, "git_source": None,
        "access_control_list": None, "tasks": [{
            "task_key": "a", "depends_on": None, "existing_cluster_id": "local", "new_cluster": None,
            "libraries": None, "timeout_seconds": None, "run_if": None,
            "notebook_task": {"notebook_path": path, "source": None, "base_parameters": None},
        }, {
            "task_key": "b", "depends_on": [{"task_key": "a", "outcome": None}], "existing_cluster_id": "local",
            "notebook_task": {"notebook_path": path, "source": None, "base_parameters": {"x": "1"}},
        }],
    }
    with session(workspace) as http:
        response = http.post("/api/2.1/jobs/runs/submit", json=body)
        assert response.status_code == 200, response.text
        run = finished(http, response.json()["run_id"])
    assert run["state"]["result_state"] == "SUCCESS"
    assert [t["task_key"] for t in run["tasks"]] == ["a", "b"]


def test_single_task_submit_names_its_task_after_the_run(workspace: LocalWorkspace, client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/named", 'dbutils.notebook.exit("ok")\n')
    run_name = "example_dag__notebook_task_" + "x" * 120  # Airflow's task key: <dag_id>__<task_id>
    with session(workspace) as http:
        response = http.post("/api/2.1/jobs/runs/submit", json={
            "run_name": run_name, "existing_cluster_id": "local", "notebook_task": {"notebook_path": path}})
        run = finished(http, response.json()["run_id"])
        legacy = finished(http, response.json()["run_id"], "2.0")
    # DatabricksNotebookOperator looks its task up as {t["task_key"]: t for t in run["tasks"]}[run_name]
    tasks = {t["task_key"]: t for t in run["tasks"]}
    assert list(tasks) == [run_name[:100]]
    assert run["run_name"] == run_name
    assert legacy["task"]["notebook_task"]["notebook_path"] == path  # the CLI 2.0 single-task shape still holds


def test_a_lone_surrogate_stored_before_checks_does_not_break_listing(workspace: LocalWorkspace,
                                                                      client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/stored", 'dbutils.notebook.exit("ok")\n')
    with session(workspace) as http:
        response = http.post("/api/2.1/jobs/runs/submit", json={
            "run_name": "fine", "existing_cluster_id": "local", "notebook_task": {"notebook_path": path}})
        run_id = response.json()["run_id"]
        finished(http, run_id)
        job_id = http.post("/api/2.1/jobs/create", json={"name": "fine", "tasks": [
            {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": path}}]}
        ).json()["job_id"]
        # what an older server stored when it accepted a lone surrogate (json.dumps escapes it as \ud800)
        with workspace.store.transaction() as db:
            record = json.loads(db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0])
            record["run_name"] = "bad\ud800name"
            db.execute("UPDATE runs SET record = ? WHERE run_id = ?", (json.dumps(record), run_id))
            db.execute("UPDATE jobs SET settings = ? WHERE job_id = ?",
                       (json.dumps({"name": "bad\ud800job", "tasks": []}), job_id))
        for call, params in (("jobs/runs/list", {}), ("jobs/runs/get", {"run_id": run_id}), ("jobs/list", {}),
                             ("jobs/get", {"job_id": job_id})):
            answer = http.get(f"/api/2.1/{call}", params=params)
            assert answer.status_code == 200, (call, answer.text)
        with httpx.Client(base_url=workspace.host) as browser:
            browser.get("/login", params={"token": workspace.token})  # the pages need the sign-in cookie
            page = browser.get(f"/runs/{run_id}")
            listing = browser.get("/")
        assert page.status_code == 200 and listing.status_code == 200
    names = {r.run_id: r.run_name for r in client.jobs.list_runs()}
    assert names[run_id].startswith("bad") and names[run_id].endswith("name")
    assert any(j.job_id == job_id for j in client.jobs.list())
    client.jobs.delete(job_id)
