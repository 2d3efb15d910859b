"""Malformed requests are 400s (or 413s) in Databricks' error shape, never 500s, and never stored.

Each case is one the hostile-input probe found answering 500 or accepting what could never run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

TOO_BIG = 2**63
NOTEBOOK = "/Users/me/hostile"
SURROGATE = "\ud800"


@pytest.fixture(scope="module")
def http(workspace: LocalWorkspace, client: WorkspaceClient) -> Iterator[httpx.Client]:
    upload_notebook(client, NOTEBOOK, 'dbutils.notebook.exit("ok")\n')
    with httpx.Client(base_url=workspace.host, headers={"Authorization": f"Bearer {workspace.token}"},
                      timeout=30) as session:
        yield session


def submit_body(**extra: Any) -> dict[str, Any]:
    task = {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": NOTEBOOK}}
    return {"run_name": "hostile", "tasks": [task], **extra}


def assert_refused(response: httpx.Response, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] in ("INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST")


def raw_json(text: str) -> dict[str, str]:
    return {"content": text, "headers": {"Content-Type": "application/json"}}  # type: ignore[dict-item]


def run_count(http: httpx.Client) -> int:
    count, token = 0, None
    while True:
        page = http.get("/api/2.1/jobs/runs/list", params={"limit": 25, **({"page_token": token} if token else {})})
        assert page.status_code == 200, page.text
        count += len(page.json().get("runs", []))
        token = page.json().get("next_page_token")
        if not token:
            return count


# -- ids ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [TOO_BIG, str(TOO_BIG), -1, "-5", 10**30])
@pytest.mark.parametrize(("method", "path", "name"), [
    ("GET", "/api/2.1/jobs/runs/get", "run_id"),
    ("GET", "/api/2.1/jobs/runs/get-output", "run_id"),
    ("POST", "/api/2.1/jobs/runs/cancel", "run_id"),
    ("POST", "/api/2.1/jobs/runs/delete", "run_id"),
    ("GET", "/api/2.1/jobs/get", "job_id"),
    ("POST", "/api/2.1/jobs/delete", "job_id"),
    ("POST", "/api/2.1/jobs/run-now", "job_id"),
    ("GET", "/api/2.1/jobs/runs/list", "job_id"),
    ("GET", "/api/2.1/jobs/runs/list", "start_time_from"),
])
def test_ids_outside_int64_are_400(http: httpx.Client, method: str, path: str, name: str, value: object) -> None:
    as_query = {"params": {name: str(value)}} if method == "GET" else {"json": {name: value}}
    assert_refused(http.request(method, path, **as_query))  # type: ignore[arg-type]


# -- wrong nested types ---------------------------------------------------------------------------

WRONG_TYPES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/2.1/jobs/runs/submit", {"run_name": "x", "existing_cluster_id": "l", "notebook_task": "x"}),
    ("POST", "/api/2.1/jobs/runs/submit", submit_body(tasks=[{"task_key": "t", "existing_cluster_id": "l",
                                                               "notebook_task": {"notebook_path": NOTEBOOK,
                                                                                 "base_parameters": ["a"]}}])),
    ("POST", "/api/2.1/jobs/runs/submit", submit_body(job_clusters=["x"])),
    ("POST", "/api/2.1/jobs/runs/submit", submit_body(environments={})),
    ("POST", "/api/2.1/jobs/runs/submit", submit_body(tasks=["x"])),
    ("POST", "/api/2.1/jobs/runs/submit", submit_body(tasks=[{"task_key": "t", "notebook_task": {
        "notebook_path": NOTEBOOK}, "depends_on": "other"}])),
    ("POST", "/api/2.1/jobs/runs/submit", submit_body(tasks=[{"task_key": "t", "sql_task": "SELECT 1"}])),
    ("POST", "/api/2.1/jobs/create", {"name": "x", "tasks": [{"task_key": "t", "notebook_task": 5}]}),
    ("POST", "/api/2.0/workspace/import", {"path": "/Users/me/f", "format": 5, "content": ""}),
    ("POST", "/api/2.0/workspace/import", {"path": "/Users/me/f", "language": 5, "content": ""}),
    ("POST", "/api/2.0/secrets/put", {"scope": "s", "key": "k", "bytes_value": 5}),
    ("POST", "/api/2.0/local/admin/faults", {"faults": "", "seed": "abc"}),
    ("POST", "/api/2.0/local/admin/inject", {"run_id": 1, "life_cycle_state": "RUNNING", "seconds": "abc"}),
    ("GET", "/api/2.0/workspace/export", {"path": NOTEBOOK, "format": 5}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRONG_TYPES)
def test_wrong_nested_types_are_400(http: httpx.Client, method: str, path: str, body: dict[str, Any]) -> None:
    assert_refused(http.request(method, path, **raw_json(json.dumps(body))))  # type: ignore[arg-type]


def test_run_now_with_list_notebook_params_is_400(http: httpx.Client) -> None:
    job_id = http.post("/api/2.1/jobs/create", json={"name": "params", "tasks": [
        {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": NOTEBOOK}}]}).json()
    response = http.post("/api/2.1/jobs/run-now", json={**job_id, "notebook_params": ["a", "b"]})
    assert_refused(response)
    assert http.post("/api/2.1/jobs/delete", json=job_id).status_code == 200


# -- values that could never run are refused at submit ------------------------------------------

@pytest.mark.parametrize("task_extra", [
    {"timeout_seconds": TOO_BIG},
    {"timeout_seconds": -1},
    {"run_if": "BOGUS"},
    {"notebook_task": {"notebook_path": "/Users/me/../../etc/passwd"}},
])
def test_values_that_could_never_run_are_400_at_submit(http: httpx.Client, task_extra: dict[str, Any]) -> None:
    before = run_count(http)
    task = {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": NOTEBOOK},
            **task_extra}
    assert_refused(http.post("/api/2.1/jobs/runs/submit", json={"run_name": "never", "tasks": [task]}))
    assert_refused(http.post("/api/2.1/jobs/runs/submit", json={"run_name": "never", "timeout_seconds": TOO_BIG,
                                                                 "tasks": [{**task, **{"timeout_seconds": 1}}]}))
    assert run_count(http) == before


# -- malformed bodies ----------------------------------------------------------------------------

def test_json_nested_ten_thousand_deep_is_400(http: httpx.Client) -> None:
    deep = '{"run_name": ' + "[" * 10_000 + "]" * 10_000 + "}"
    assert_refused(http.post("/api/2.1/jobs/runs/submit", **raw_json(deep)))  # type: ignore[arg-type]
    shallow_but_deep = '{"tags": {"a": ' + '{"b": ' * 200 + "1" + "}" * 200 + "}}"
    assert_refused(http.post("/api/2.1/jobs/runs/submit", **raw_json(shallow_but_deep)))  # type: ignore[arg-type]


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=",
                                          "multipart/form-data; boundary=nothere"])
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/2.0/workspace/import"),
                                              ("GET", "/api/2.0/workspace/get-status"),
                                              ("GET", "/api/2.1/jobs/runs/list")])
def test_multipart_with_a_bad_boundary_is_400(http: httpx.Client, method: str, path: str, content_type: str) -> None:
    response = http.request(method, path, content=b"--x\r\nnot a form\r\n",
                            headers={"Content-Type": content_type})
    assert_refused(response)


def test_body_that_is_not_utf8_is_400(http: httpx.Client) -> None:
    assert_refused(http.post("/api/2.1/jobs/runs/submit", content=b'{"run_name": "\xff"}',
                             headers={"Content-Type": "application/json"}))


# -- lone surrogates ------------------------------------------------------------------------------

SURROGATE_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/api/2.1/jobs/runs/submit", submit_body(idempotency_token="tok" + SURROGATE)),
    ("/api/2.1/jobs/runs/submit", submit_body(run_name="bad" + SURROGATE + "name")),
    ("/api/2.1/jobs/create", {"name": "bad" + SURROGATE, "tasks": submit_body()["tasks"]}),
    ("/api/2.0/workspace/mkdirs", {"path": "/Users/me/" + SURROGATE}),
    ("/api/2.0/workspace/import", {"path": "/Users/me/s" + SURROGATE, "format": "RAW", "content": ""}),
    ("/api/2.0/secrets/put", {"scope": "s", "key": "k", "string_value": "v" + SURROGATE}),
    ("/api/2.0/secrets/scopes/create", {"scope": SURROGATE}),
]


@pytest.mark.parametrize(("path", "body"), SURROGATE_BODIES)
def test_lone_surrogates_are_400_and_never_stored(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    runs_before = run_count(http)
    # json.dumps escapes the surrogate as \ud800, exactly what a hostile client sends
    assert_refused(http.post(path, **raw_json(json.dumps(body))))  # type: ignore[arg-type]
    assert run_count(http) == runs_before
    assert http.get("/api/2.1/jobs/list").status_code == 200
    assert http.get("/api/2.0/workspace/list", params={"path": "/Users/me"}).status_code == 200


# -- sizes ----------------------------------------------------------------------------------------

def test_a_body_over_the_jobs_api_limit_is_413_before_it_is_read(http: httpx.Client) -> None:
    before = run_count(http)
    huge = submit_body(tags={"blob": "x" * (11 * 1024 * 1024)})
    response = http.post("/api/2.1/jobs/runs/submit", json=huge)
    assert_refused(response, 413)
    assert "10 MB" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b'{"run_name": "chunked", "tags": {"blob": "'
        for _ in range(12):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    assert_refused(http.post("/api/2.1/jobs/runs/submit", content=chunks(),
                             headers={"Content-Type": "application/json"}), 413)
    assert run_count(http) == before


def test_an_import_of_ten_mb_fits_and_one_over_is_refused(http: httpx.Client) -> None:
    ok = base64.b64encode(b"a" * (9 * 1024 * 1024)).decode()
    assert http.post("/api/2.0/workspace/import", json={"path": "/Users/me/big.bin", "format": "RAW",
                                                        "content": ok, "overwrite": True}).status_code == 200
    over = base64.b64encode(b"a" * (10 * 1024 * 1024 + 1)).decode()
    assert_refused(http.post("/api/2.0/workspace/import", json={"path": "/Users/me/big2.bin", "format": "RAW",
                                                                "content": over}))
    http.post("/api/2.0/workspace/delete", json={"path": "/Users/me/big.bin"})
