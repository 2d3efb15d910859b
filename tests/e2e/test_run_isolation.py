"""What a run sees of its own settings, and only its own: widgets, spark_env_vars, libraries."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import ClusterSpec, Library, PythonPyPiLibrary
from databricks.sdk.service.jobs import NotebookTask, RunResultState, SubmitTask, TerminationCodeCode

from tests.fixtures_workspace import upload_notebook

WAIT = timedelta(minutes=2)
REPORT = (
    'import json, os, time\n'
    'dbutils.widgets.text("colour", "grey")\n'
    'time.sleep(0.5)  # both runs are in flight at once\n'
    'dbutils.notebook.exit(json.dumps({"colour": dbutils.widgets.get("colour"), '
    '"env": os.environ.get("TEAM_NAME"), "other": os.environ.get("OTHER_TEAM")}))\n'
)


def submit(client: WorkspaceClient, path: str, params: dict[str, str] | None, env: dict[str, str],
           libraries: list[Library] | None = None) -> tuple[RunResultState | None, int]:
    cluster = ClusterSpec(spark_version="15.4.x-scala2.12", node_type_id="Standard_D3_v2", num_workers=1,
                          spark_env_vars=env)
    run = client.jobs.submit(run_name="isolation", tasks=[SubmitTask(
        task_key="t", new_cluster=cluster, libraries=libraries,
        notebook_task=NotebookTask(notebook_path=path, base_parameters=params))]).result(timeout=WAIT)
    return run.state.result_state, run.tasks[0].run_id


def test_widget_default_versus_base_parameters(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Shared/isolation/report_default", REPORT)
    _, default_run = submit(client, path, None, {})
    _, given_run = submit(client, path, {"colour": "teal"}, {})
    assert json.loads(client.jobs.get_run_output(default_run).notebook_output.result)["colour"] == "grey"
    assert json.loads(client.jobs.get_run_output(given_run).notebook_output.result)["colour"] == "teal"


def test_two_concurrent_runs_see_only_their_own_widgets_and_env(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Shared/isolation/report", REPORT)
    with ThreadPoolExecutor(2) as pool:
        red, blue = pool.map(lambda args: submit(client, path, *args), [
            ({"colour": "red"}, {"TEAM_NAME": "red team"}),
            ({"colour": "blue"}, {"TEAM_NAME": "blue team", "OTHER_TEAM": "red team"}),
        ])
    seen_red = json.loads(client.jobs.get_run_output(red[1]).notebook_output.result)
    seen_blue = json.loads(client.jobs.get_run_output(blue[1]).notebook_output.result)
    assert seen_red == {"colour": "red", "env": "red team", "other": None}
    assert seen_blue == {"colour": "blue", "env": "blue team", "other": "red team"}


def test_a_library_that_cannot_be_installed_fails_the_run(client: WorkspaceClient,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: pip looks nowhere and fails at once
    path = upload_notebook(client, "/Shared/isolation/needs_lib", 'dbutils.notebook.exit("never")\n')
    lib = Library(pypi=PythonPyPiLibrary(package="aml-databricks-no-such-package-xyz"))
    state, task_run = submit(client, path, None, {}, libraries=[lib])

    assert state == RunResultState.FAILED
    run = client.jobs.get_run(task_run)
    assert run.status.termination_details.code == TerminationCodeCode.LIBRARY_INSTALLATION_ERROR
    output = client.jobs.get_run_output(task_run)
    assert "aml-databricks-no-such-package-xyz" in output.error
    assert output.notebook_output.result is None


def test_clusters_api_lists_the_default_cluster(client: WorkspaceClient) -> None:
    assert "local" in [c.cluster_id for c in client.clusters.list()]
    assert client.clusters.get("local").cluster_id == "local"
