"""What every route must do over plain HTTP: auth, errors in Databricks' shape, confinement."""

from __future__ import annotations

import pytest
import requests
from databricks.sdk.service.workspace import ImportFormat, Language

from aml_databricks.workspace import LocalWorkspace
from aml_databricks.workspace.app import Services, api_table


def authenticated_routes(workspace: LocalWorkspace) -> list[tuple[str, str]]:
    return sorted(api_table(Services(workspace.store, workspace.scheduler, workspace.token)))


def test_every_api_route_needs_a_token(workspace: LocalWorkspace) -> None:
    routes = authenticated_routes(workspace)
    assert len(routes) > 40
    for method, path in routes:
        missing = requests.request(method, workspace.host + path, json={})
        wrong = requests.request(method, workspace.host + path, json={}, headers={"Authorization": "Bearer nope"})
        assert missing.status_code == 401, (method, path)
        assert wrong.status_code == 403, (method, path)
        assert missing.json()["error_code"] == "UNAUTHENTICATED"
        assert wrong.json()["error_code"] == "PERMISSION_DENIED"


def test_well_known_config_is_public(workspace: LocalWorkspace) -> None:
    assert requests.get(workspace.host + "/.well-known/databricks-config").json()["workspace_id"]


def test_unknown_endpoint_is_404_in_databricks_shape(workspace: LocalWorkspace) -> None:
    response = requests.get(workspace.host + "/api/2.1/jobs/no-such-thing",
                            headers={"Authorization": f"Bearer {workspace.token}"})
    assert response.status_code == 404
    assert set(response.json()) == {"error_code", "message"}
    wrong_method = requests.post(workspace.host + "/api/2.1/jobs/runs/get",
                                 headers={"Authorization": f"Bearer {workspace.token}"})
    assert wrong_method.status_code == 405 and wrong_method.json()["error_code"]
    outside_api = requests.get(workspace.host + "/nothing-here")
    assert outside_api.status_code == 404 and outside_api.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.mark.parametrize("path", ["/Users/../etc/passwd", "/Users/me/./x", "relative/path", "/a/b/../../c"])
def test_path_traversal_is_refused(workspace: LocalWorkspace, path: str) -> None:
    response = requests.get(workspace.host + "/api/2.0/workspace/get-status", params={"path": path},
                            headers={"Authorization": f"Bearer {workspace.token}"})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("task", [
    {"sql_task": {"warehouse_id": "w", "query": {"query_id": "q"}}},
    {"dbt_task": {"commands": ["dbt run"]}},
    {"pipeline_task": {"pipeline_id": "p"}},
    {"spark_jar_task": {"main_class_name": "Main"}},
])
def test_unsupported_task_types_are_named(workspace: LocalWorkspace, task: dict[str, object]) -> None:
    body = {"run_name": "x", "tasks": [{"task_key": "t", "existing_cluster_id": "local", **task}]}
    response = requests.post(workspace.host + "/api/2.1/jobs/runs/submit", json=body,
                             headers={"Authorization": f"Bearer {workspace.token}"})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert next(iter(task)) in response.json()["message"] and "not supported" in response.json()["message"]


def test_git_source_is_refused_not_ignored(workspace: LocalWorkspace) -> None:
    body = {"run_name": "x", "git_source": {"git_url": "https://example.invalid/r", "git_provider": "gitHub"},
            "tasks": [{"task_key": "t", "notebook_task": {"notebook_path": "nb"}}]}
    response = requests.post(workspace.host + "/api/2.2/jobs/runs/submit", json=body,
                             headers={"Authorization": f"Bearer {workspace.token}"})
    assert response.status_code == 400 and "git_source" in response.json()["message"]


def test_airflow_style_strings_and_get_with_json_body(workspace: LocalWorkspace) -> None:
    auth = {"Authorization": f"Bearer {workspace.token}"}
    workspace.client.workspace.upload("/Shared/airflow", b"# Databricks notebook source\nx = 1\n",
                                      format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True)
    body = {"run_name": "airflow", "timeout_seconds": "3600", "existing_cluster_id": "local",
            "notebook_task": {"notebook_path": "/Shared/airflow"}}
    run_id = requests.post(workspace.host + "/api/2.1/jobs/runs/submit", json=body, headers=auth).json()["run_id"]
    by_body = requests.get(workspace.host + "/api/2.1/jobs/runs/get", json={"run_id": str(run_id)}, headers=auth)
    assert by_body.status_code == 200 and by_body.json()["run_id"] == run_id
    assert "next_page_token" not in by_body.json()
