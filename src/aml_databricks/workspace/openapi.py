"""The OpenAPI 3 description of every route the workspace serves, served at /openapi.json.

Built from the route table itself (so a route can't be served undescribed: `describe` raises for a
path it has no entry for, and a test builds it from the live table) and from the typed request
models (`model_json_schema()`), so the description checks what the edge validates. Routes without a
body model describe their parameters here. Answers are described loosely (an object; errors in
Databricks' `{error_code, message}` shape): the workspace's responses follow databricks-sdk's
dataclasses, which are the reference for their fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from aml_databricks.workspace.models import (
    MAX_INT64,
    CancelAllRuns,
    FaultPlan,
    JobReset,
    JobUpdate,
    RepairRun,
    RunNow,
    RunSettings,
    SecretPut,
    WorkspaceImport,
)

INT64: dict[str, Any] = {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_INT64}
STRING: dict[str, Any] = {"type": "string"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
ANY: dict[str, Any] = {}

# (name, schema, required) of each parameter, by path without its /api/<version> prefix
Param = tuple[str, dict[str, Any], bool]
PARAMETERS: dict[str, list[Param]] = {
    "/preview/scim/v2/Me": [],
    "/workspace/get-status": [("path", STRING, True)],
    "/workspace/list": [("path", STRING, True)],
    "/workspace/export": [("path", STRING, True), ("format", STRING, False), ("direct_download", BOOLEAN, False)],
    "/workspace/import": [],
    "/workspace/mkdirs": [("path", STRING, True)],
    "/workspace/delete": [("path", STRING, True), ("recursive", BOOLEAN, False)],
    "/secrets/scopes/create": [("scope", STRING, True), ("initial_manage_principal", STRING, False)],
    "/secrets/scopes/list": [],
    "/secrets/scopes/delete": [("scope", STRING, True)],
    "/secrets/put": [],
    "/secrets/list": [("scope", STRING, True)],
    "/secrets/delete": [("scope", STRING, True), ("key", STRING, True)],
    "/secrets/get": [("scope", STRING, True), ("key", STRING, True)],
    "/clusters/list": [],
    "/clusters/get": [("cluster_id", STRING, True)],
    "/clusters/start": [("cluster_id", STRING, True)],
    "/clusters/delete": [("cluster_id", STRING, True)],
    "/local/secrets/get": [("scope", STRING, True), ("key", STRING, True)],
    "/local/task-values/set": [("key", STRING, True), ("value", ANY, True)],
    "/local/task-values/get": [("task_key", STRING, True), ("key", STRING, True)],
    "/local/mounts": [("mount_point", STRING, False), ("source", STRING, False), ("local_path", STRING, False)],
    "/local/mounts/delete": [("mount_point", STRING, True)],
    "/local/admin/faults": [],
    "/local/admin/inject": [("run_id", INT64, True), ("life_cycle_state", STRING, True),
                            ("seconds", {"type": "number"}, False), ("state_message", STRING, False)],
    "/jobs/runs/submit": [],
    "/jobs/runs/get": [("run_id", INT64, True), ("include_history", BOOLEAN, False),
                       ("wait_seconds", {"type": "integer", "minimum": 0}, False),  # held up to 30 s
                       ("seen_life_cycle_state", STRING, False)],
    "/jobs/runs/get-output": [("run_id", INT64, True)],
    "/jobs/runs/cancel": [("run_id", INT64, True)],
    "/jobs/runs/delete": [("run_id", INT64, True)],
    "/jobs/runs/list": [("job_id", INT64, False), ("active_only", BOOLEAN, False),
                        ("completed_only", BOOLEAN, False), ("offset", INT64, False),
                        ("limit", {"type": "integer", "minimum": 0, "maximum": 25}, False),
                        ("run_type", STRING, False), ("start_time_from", INT64, False),
                        ("start_time_to", INT64, False), ("page_token", STRING, False),
                        ("expand_tasks", BOOLEAN, False)],
    "/jobs/create": [],
    "/jobs/get": [("job_id", INT64, True)],
    "/jobs/list": [("offset", INT64, False), ("limit", {"type": "integer", "minimum": 0, "maximum": 100}, False),
                   ("name", STRING, False), ("page_token", STRING, False), ("expand_tasks", BOOLEAN, False)],
    "/jobs/delete": [("job_id", INT64, True)],
    "/jobs/run-now": [],
    "/jobs/runs/export": [("run_id", INT64, True), ("views_to_export", STRING, False)],
    "/jobs/runs/cancel-all": [],
    "/jobs/runs/repair": [],
    "/jobs/reset": [],
    "/jobs/update": [],
    "/dbfs/get-status": [("path", STRING, True)],
    "/dbfs/list": [("path", STRING, True)],
    "/dbfs/read": [("path", STRING, True), ("offset", INT64, False), ("length", INT64, False)],
    "/dbfs/put": [("path", STRING, True), ("contents", STRING, False), ("overwrite", BOOLEAN, False)],
    "/dbfs/create": [("path", STRING, True), ("overwrite", BOOLEAN, False)],
    "/dbfs/add-block": [("handle", INT64, True), ("data", STRING, True)],
    "/dbfs/close": [("handle", INT64, True)],
    "/dbfs/mkdirs": [("path", STRING, True)],
    "/dbfs/delete": [("path", STRING, True), ("recursive", BOOLEAN, False)],
    "/dbfs/move": [("source_path", STRING, True), ("destination_path", STRING, True)],
    "/fs/endpoints": [],
}

# (method, path without prefix) -> the model its body is validated into
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/workspace/import"): WorkspaceImport,
    ("POST", "/secrets/put"): SecretPut,
    ("POST", "/local/admin/faults"): FaultPlan,
    ("POST", "/jobs/runs/submit"): RunSettings,
    ("POST", "/jobs/create"): RunSettings,
    ("POST", "/jobs/run-now"): RunNow,
    ("POST", "/jobs/runs/cancel-all"): CancelAllRuns,
    ("POST", "/jobs/runs/repair"): RepairRun,
    ("POST", "/jobs/reset"): JobReset,
    ("POST", "/jobs/update"): JobUpdate,
}

_PREFIX = re.compile(r"^/api/[^/]+")

# OpenAPI links: what an answer's ids let a client call next, so a stateful fuzzer can follow a run and a
# job through their lives (submit -> get -> get-output -> cancel -> delete; create -> run-now -> list -> delete).
# (method, path without prefix) -> name -> (target method, target path, {parameter: runtime expression});
# a target that takes a body gets the parameters as its JSON body.
_RUN = "$response.body#/run_id"
_TASK_RUN = "$response.body#/tasks/0/run_id"
_JOB = "$response.body#/job_id"
LINKS: dict[tuple[str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("POST", "/jobs/runs/submit"): {
        "GetRun": ("GET", "/jobs/runs/get", {"run_id": _RUN}),
        "CancelRun": ("POST", "/jobs/runs/cancel", {"run_id": _RUN}),
    },
    ("POST", "/jobs/run-now"): {
        "GetRun": ("GET", "/jobs/runs/get", {"run_id": _RUN}),
        "CancelRun": ("POST", "/jobs/runs/cancel", {"run_id": _RUN}),
    },
    ("GET", "/jobs/runs/get"): {
        "GetTaskOutput": ("GET", "/jobs/runs/get-output", {"run_id": _TASK_RUN}),
        "DeleteRun": ("POST", "/jobs/runs/delete", {"run_id": _RUN}),
    },
    ("POST", "/jobs/runs/cancel"): {
        "GetRun": ("GET", "/jobs/runs/get", {"run_id": "$request.body#/run_id"}),
    },
    ("POST", "/jobs/create"): {
        "RunNow": ("POST", "/jobs/run-now", {"job_id": _JOB}),
        "GetJob": ("GET", "/jobs/get", {"job_id": _JOB}),
        "ListRuns": ("GET", "/jobs/runs/list", {"job_id": _JOB}),
        "DeleteJob": ("POST", "/jobs/delete", {"job_id": _JOB}),
    },
}

ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {"error_code": STRING, "message": STRING},
    "required": ["error_code", "message"],
}
OTHER_PAGES: dict[str, dict[str, Any]] = {
    "/runs/{run_id}": {"get": {
        "summary": "The run page (HTML; needs the sign-in cookie of workspace/pages/auth.py)",
        "parameters": [{"name": "run_id", "in": "path", "required": True, "schema": INT64}],
        "responses": {"200": {"description": "the run page", "content": {"text/html": {"schema": STRING}}},
                      "303": {"description": "not signed in: to the sign-in page"},
                      "404": {"description": "no such run", "content": {"text/html": {"schema": STRING}}}},
    }},
    "/.well-known/databricks-config": {"get": {
        "summary": "Where the workspace's OIDC endpoints are", "security": [],
        "responses": {"200": {"description": "the configuration",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
}


def _files_api() -> dict[str, dict[str, Any]]:
    """The Files API on /Volumes: its paths are a prefix and the rest of the path, not table entries."""
    path_param = [{"name": "path", "in": "path", "required": True, "schema": STRING}]
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    answers = {"200": {"description": "the answer"}, "204": {"description": "done"},
               **{status: {"description": what, **error} for status, what in (
                   ("400", "bad request"), ("401", "no or bad token"), ("403", "not allowed"),
                   ("404", "no such file or folder"), ("409", "conflict"), ("413", "body too large"),
                   ("416", "range not satisfiable"))}}
    files: dict[str, Any] = {method: {"parameters": path_param, "responses": answers}
                             for method in ("get", "head", "delete")}
    files["put"] = {"parameters": [*path_param, {"name": "overwrite", "in": "query", "schema": BOOLEAN}],
                    "requestBody": {"content": {"application/octet-stream": {"schema": STRING}}},
                    "responses": answers}
    folders: dict[str, Any] = {method: {"parameters": path_param, "responses": answers}
                               for method in ("get", "head", "put", "delete")}
    return {"/api/2.0/fs/files/Volumes/{path}": files, "/api/2.0/fs/directories/Volumes/{path}": folders}


class Undescribed(KeyError):
    """A served route with no entry here: add its parameters to PARAMETERS (and BODIES)."""


def check_described(routes: Iterable[tuple[str, str]]) -> None:
    """Raise `Undescribed` for the first of `routes` with no entry here (cheap: no schema is built)."""
    for method, path in routes:
        if _PREFIX.sub("", path) not in PARAMETERS:
            raise Undescribed(f"{method} {path} has no description in workspace/openapi.py")


def describe(routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` ((method, path) pairs as the app's table holds them)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR}
    for method, path in sorted(routes):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, schemas)
    paths.update(OTHER_PAGES)
    paths.update(_files_api())
    paths["/openapi.json"] = {"get": {
        "summary": "This description", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "aml-databricks local workspace", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(method: str, path: str, schemas: dict[str, Any]) -> dict[str, Any]:
    short = _PREFIX.sub("", path)
    if short not in PARAMETERS:
        raise Undescribed(f"{method} {path} has no description in workspace/openapi.py")
    params = PARAMETERS[short]
    operation: dict[str, Any] = {"operationId": _operation_id(method, path), "responses": _responses()}
    links = LINKS.get((method, short))
    if links:
        version = path[: len(path) - len(short)]
        operation["responses"]["200"]["links"] = {
            name: {"operationId": _operation_id(target_method, version + target),
                   **({"parameters": values} if target_method == "GET" else {"requestBody": values})}
            for name, (target_method, target, values) in links.items()
        }
    model = BODIES.get((method, short))
    if model is not None:
        name = model.__name__
        if name not in schemas:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
    elif method == "GET":
        operation["parameters"] = [{"name": name, "in": "query", "required": required, "schema": schema}
                                   for name, schema, required in params]
    else:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {name: schema for name, schema, _ in params},
            "required": [name for name, _, required in params if required],
        }}}}
    return operation


def _operation_id(method: str, path: str) -> str:
    return f"{method.lower()}{path.replace('/', '_').replace('.', '_')}"


def _responses() -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    answers: dict[str, Any] = {"200": {"description": "the answer", "content": {"application/json": {}}}}
    for status, what in (("400", "bad request"), ("401", "no or bad token"), ("403", "not allowed"),
                         ("404", "no such object"), ("405", "wrong method"), ("409", "conflict"),
                         ("413", "body too large"), ("429", "too many requests"), ("503", "unavailable")):
        answers[status] = {"description": what, **error}
    return answers
