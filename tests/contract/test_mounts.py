"""A mount made by one run is there for the next run, as on Databricks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import NotebookTask, RunResultState, SubmitTask

from tests.fixtures_workspace import upload_notebook


def run_notebook(client: WorkspaceClient, path: str, params: dict[str, str]) -> RunResultState | None:
    run = client.jobs.submit(run_name="mounts", tasks=[SubmitTask(
        task_key="t", existing_cluster_id="local",
        notebook_task=NotebookTask(notebook_path=path, base_parameters=params))]).result(timeout=timedelta(minutes=1))
    return run.state.result_state


def test_runtime_mount_outlives_its_run(client: WorkspaceClient, tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    folder.mkdir()
    mount = upload_notebook(client, "/Shared/mounts/mount", 'dbutils.fs.mount(source=dbutils.widgets.get("src"), '
                            'mount_point="/mnt/lake")\n')
    write = upload_notebook(client, "/Shared/mounts/write", 'dbutils.fs.put("/mnt/lake/hello.txt", "hi", True)\n')
    unmount = upload_notebook(client, "/Shared/mounts/unmount", 'dbutils.fs.unmount("/mnt/lake")\n')

    assert run_notebook(client, mount, {"src": folder.as_uri()}) == RunResultState.SUCCESS
    assert run_notebook(client, write, {}) == RunResultState.SUCCESS
    assert (folder / "hello.txt").read_text() == "hi"
    assert run_notebook(client, unmount, {}) == RunResultState.SUCCESS
    assert "/mnt/lake" not in [m["mountPoint"] for m in client.api_client.do("GET", "/api/2.0/local/mounts")["mounts"]]
