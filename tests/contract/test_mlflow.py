"""MLflow with the `databricks` tracking URI against the local workspace, from a client in its own process.

The client (mlflow_client.py) is plain MLflow 3 code; the tests read what it did back over the REST API
and from the data dir. Needs full `mlflow` (the `mlflow` extra): skipped without it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import ClusterSpec
from databricks.sdk.service.jobs import NotebookTask, RunResultState, SubmitTask

from aml_databricks.workspace import LocalWorkspace, mlflow_api
from tests.fixtures_workspace import upload_notebook

pytest.importorskip("mlflow.server", reason="the workspace's MLflow API needs the mlflow extra")
pytest.importorskip("sklearn")

CLIENT = Path(__file__).with_name("mlflow_client.py")
EXPERIMENT = "/Users/local-user@localhost/contract"


def client_env(workspace: LocalWorkspace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI="databricks", DATABRICKS_HOST=workspace.host, DATABRICKS_TOKEN=workspace.token)
    return env


def api(workspace: LocalWorkspace, method: str, path: str, token: str | None = "", **kwargs: Any) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token or workspace.token}"}
    return requests.request(method, f"{workspace.host}{path}", headers=headers, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def seen(workspace: LocalWorkspace) -> dict[str, Any]:
    """What the client process saw; it ran the whole scenario once."""
    done = subprocess.run([sys.executable, str(CLIENT), EXPERIMENT], env=client_env(workspace),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_runs_params_metrics_and_tags_land_in_the_workspace(workspace: LocalWorkspace, seen: dict[str, Any]) -> None:
    assert seen["tracking_uri"] == "databricks"
    run = api(workspace, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": seen["run_id"]}).json()["run"]
    assert run["info"]["experiment_id"] == seen["experiment_id"]
    assert run["info"]["status"] == "FINISHED"
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"alpha": "0.5", "solver": "lbfgs"}
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"rmse": 0.25}  # the latest value
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["team"] == "local"
    history = api(workspace, "GET", "/api/2.0/mlflow/metrics/get-history",
                  params={"run_id": seen["run_id"], "metric_key": "rmse"}).json()["metrics"]
    assert [m["value"] for m in sorted(history, key=lambda m: m["step"])] == [0.9, 0.5, 0.25]
    experiment = api(workspace, "GET", "/api/2.0/mlflow/experiments/get-by-name",
                     params={"experiment_name": EXPERIMENT}).json()["experiment"]
    assert experiment["experiment_id"] == seen["experiment_id"]
    assert seen["search_runs"] == [seen["run_id"]]
    assert (workspace.data_dir / "mlflow" / "mlflow.db").is_file()


def test_artifacts_travel_through_the_files_api_into_the_data_dir(workspace: LocalWorkspace,
                                                                  seen: dict[str, Any]) -> None:
    experiment, run = seen["experiment_id"], seen["run_id"]
    assert seen["artifact_uri"] == f"dbfs:/databricks/mlflow-tracking/{experiment}/{run}/artifacts"  # as Databricks
    stored = workspace.data_dir / "mlflow" / "artifacts" / experiment / "Runs" / run / "artifacts"
    assert (stored / "notes" / "note.txt").read_text() == "hello from the client"
    assert seen["artifacts"] == ["notes/note.txt"]
    assert seen["note"] == "hello from the client"
    listing = api(workspace, "GET", f"/api/2.0/fs/directories/WorkspaceInternal/Mlflow/Artifacts/{experiment}"
                                    f"/Runs/{run}/artifacts/notes").json()
    assert [entry["name"] for entry in listing["contents"]] == ["note.txt"]


def test_log_model_then_load_it_back(workspace: LocalWorkspace, seen: dict[str, Any]) -> None:
    assert seen["prediction"] == pytest.approx(7.0)  # y = 2x + 1, fitted in the client, loaded back from the workspace
    model_id = seen["model_uri"].removeprefix("models:/")
    model = api(workspace, "GET", f"/api/2.0/mlflow/logged-models/{model_id}").json()["model"]
    assert model["info"]["source_run_id"] == seen["run_id"]
    assert model["info"]["status"] == "LOGGED_MODEL_READY"
    folder = Path(*seen["model_artifact_location"].removeprefix("dbfs:/databricks/mlflow-tracking/").split("/"))
    stored = workspace.data_dir / "mlflow" / "artifacts" / folder.parts[0] / "Runs" / Path(*folder.parts[1:])
    assert (stored / "MLmodel").is_file() and (stored / "model.pkl").is_file()


def test_register_model_in_the_workspace_registry(workspace: LocalWorkspace, seen: dict[str, Any]) -> None:
    assert seen["registered"] == {"name": "contract_model", "version": "1"}
    versions = api(workspace, "GET", "/api/2.0/mlflow/registered-models/get",
                   params={"name": "contract_model"}).json()["registered_model"]["latest_versions"]
    assert [(v["version"], v["run_id"]) for v in versions] == [("1", seen["run_id"])]


def test_unity_catalog_registry_is_refused_naming_the_fix(workspace: LocalWorkspace, seen: dict[str, Any]) -> None:
    assert seen["default_registry_uri"].startswith("databricks-uc")
    assert "NOT_IMPLEMENTED" in seen["unity_catalog_error"]
    assert 'mlflow.set_registry_uri("databricks")' in seen["unity_catalog_error"]
    answer = api(workspace, "POST", "/api/2.0/mlflow/unity-catalog/registered-models/create", json={"name": "a.b.c"})
    assert answer.status_code == 501
    assert answer.json()["error_code"] == "NOT_IMPLEMENTED"


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/experiments/search", "/ajax-api/2.0/mlflow/experiments/search"])
def test_mlflow_calls_need_the_workspace_token(workspace: LocalWorkspace, path: str) -> None:
    missing = api(workspace, "POST", path, token=None, json={"max_results": 5})
    assert missing.status_code == 401
    assert missing.json()["error_code"] == "UNAUTHENTICATED"
    wrong = api(workspace, "POST", path, token="dapi-not-the-token", json={"max_results": 5})
    assert wrong.status_code == 403
    assert api(workspace, "POST", path, json={"max_results": 5}).status_code == 200


def signed_in_browser(workspace: LocalWorkspace) -> requests.Session:
    browser = requests.Session()
    assert browser.get(f"{workspace.host}/login", params={"token": workspace.token}, timeout=30).status_code == 200
    return browser


def test_mlflow_web_ui_is_served_under_mlflow_to_a_signed_in_browser(workspace: LocalWorkspace,
                                                                     seen: dict[str, Any]) -> None:
    browser = signed_in_browser(workspace)
    assert 'href="/mlflow/"' in browser.get(f"{workspace.host}/", timeout=30).text  # the run pages link to it
    index = browser.get(f"{workspace.host}/mlflow/", timeout=120)
    assert index.status_code == 200 and "<title>MLflow</title>" in index.text
    # its script and its API calls are relative to the page: they come back under /mlflow/ too
    script = re.search(r'src="(static-files/[^"]+\.js)"', index.text)
    assert script is not None
    assert browser.get(f"{workspace.host}/mlflow/{script.group(1)}", timeout=60).status_code == 200
    found = browser.post(f"{workspace.host}/mlflow/ajax-api/2.0/mlflow/experiments/search",
                         json={"max_results": 100}, timeout=60)
    assert found.status_code == 200, found.text
    assert seen["experiment_id"] in [e["experiment_id"] for e in found.json()["experiments"]]
    run = browser.get(f"{workspace.host}/mlflow/ajax-api/2.0/mlflow/runs/get", params={"run_id": seen["run_id"]},
                      timeout=60)
    assert run.json()["run"]["info"]["run_id"] == seen["run_id"]
    assert browser.get(f"{workspace.host}/mlflow", allow_redirects=False, timeout=30).headers["location"] == "/mlflow/"
    # the artifact view reads what the client stored through the Files API
    listing = browser.get(f"{workspace.host}/mlflow/ajax-api/2.0/mlflow/artifacts/list",
                          params={"run_id": seen["run_id"], "path": "notes"}, timeout=60)
    assert [f["path"] for f in listing.json()["files"]] == ["notes/note.txt"], listing.text
    content = browser.get(f"{workspace.host}/mlflow/get-artifact",
                          params={"path": "notes/note.txt", "run_uuid": seen["run_id"]}, timeout=60)
    assert content.status_code == 200 and content.text == "hello from the client"


def test_mlflow_web_ui_needs_the_sign_in_cookie(workspace: LocalWorkspace) -> None:
    page = requests.get(f"{workspace.host}/mlflow/", allow_redirects=False, timeout=30)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/mlflow/"
    # the API token is for the API: the UI's own calls need the browser's session
    call = api(workspace, "POST", "/mlflow/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 5})
    assert call.status_code == 401 and "experiments" not in call.text


def test_mlflow_web_ui_without_mlflow_installed_says_which_extra(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    # the step's light install has no `mlflow` distribution: the proxy looks it up before starting a server
    monkeypatch.setattr(mlflow_api.importlib.metadata, "distribution", not_installed)
    with LocalWorkspace(tmp_path / "data", spark=False) as workspace:
        page = signed_in_browser(workspace).get(f"{workspace.host}/mlflow/", timeout=30)
        api_call = api(workspace, "POST", "/api/2.0/mlflow/experiments/search", json={"max_results": 5})
    assert page.status_code == 501
    assert page.text == mlflow_api.UI_NOT_INSTALLED + "\n" and "aml-databricks[mlflow]" in page.text
    assert api_call.status_code == 501 and api_call.json()["error_code"] == "NOT_IMPLEMENTED"


def test_mlflow_server_starts_on_first_use_restarts_after_a_crash_and_stops_with_the_workspace(
        tmp_path: Path) -> None:
    with LocalWorkspace(tmp_path / "data", spark=False) as workspace:
        assert not (workspace.data_dir / "mlflow").exists()  # nothing started with the workspace
        created = api(workspace, "POST", "/api/2.0/mlflow/experiments/create", json={"name": "/Users/me/kept"})
        assert created.status_code == 200, created.text
        backend = workspace.mlflow.server_pid
        assert backend is not None
        os.kill(backend, 9)
        again = api(workspace, "GET", "/api/2.0/mlflow/experiments/get-by-name",
                    params={"experiment_name": "/Users/me/kept"})
        assert again.status_code == 200, again.text  # a new server, the same store
        assert again.json()["experiment"]["experiment_id"] == created.json()["experiment_id"]
        restarted = workspace.mlflow.server_pid
        assert restarted not in (None, backend)
    assert not Path(f"/proc/{restarted}").exists()  # stopped and reaped with the workspace


NOTEBOOK = """\
import os
import mlflow
print("token:", os.environ["DATABRICKS_TOKEN"])
mlflow.set_tracking_uri("databricks")
mlflow.set_experiment("/Users/local-user@localhost/from-a-notebook")
with mlflow.start_run() as run:
    mlflow.log_metric("accuracy", 0.91)
dbutils.notebook.exit(run.info.run_id)
"""


@pytest.mark.parametrize("compute", [
    {"existing_cluster_id": "local"},
    # a runtime version: DATABRICKS_RUNTIME_VERSION is set, so MLflow believes it runs on Databricks
    {"new_cluster": ClusterSpec(spark_version="15.4.x-scala2.12", node_type_id="Standard_DS3_v2", num_workers=0)},
], ids=["existing-cluster", "new-cluster-with-runtime"])
def test_a_notebook_logs_to_the_workspace_with_the_databricks_uri(workspace: LocalWorkspace, client: WorkspaceClient,
                                                                  compute: dict[str, Any]) -> None:
    path = upload_notebook(client, "/Users/me/mlflow_notebook", NOTEBOOK)
    run = client.jobs.submit(run_name="mlflow", tasks=[SubmitTask(
        task_key="main", notebook_task=NotebookTask(notebook_path=path), **compute,
    )]).result(timeout=timedelta(minutes=5))
    assert run.tasks is not None
    output = client.jobs.get_run_output(run.tasks[0].run_id)
    assert run.state is not None and run.state.result_state == RunResultState.SUCCESS, output.error_trace
    assert output.notebook_output is not None and output.notebook_output.result
    logged = api(workspace, "GET", "/api/2.0/mlflow/runs/get",
                 params={"run_id": output.notebook_output.result}).json()["run"]
    assert {m["key"]: m["value"] for m in logged["data"]["metrics"]} == {"accuracy": 0.91}
    assert "token: [REDACTED]" in (output.logs or "")  # the run's token, there for MLflow, is not shown
