"""HTTP mapping of the local workspace: routes, bearer-token auth, one error renderer.

Handlers are small synchronous functions `(call) -> dict`; everything they do is a short SQLite
query, so they run on the event loop rather than paying a thread hop per request. The one that may
wait, runs/get with the `wait_seconds` long-poll (long_poll.py), is a coroutine the endpoint awaits.
"""

from __future__ import annotations

import base64
import hmac
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aml_databricks.workspace.errors import (
    ApiError,
    EndpointNotFound,
    InternalError,
    InvalidParameterValue,
    PermissionDenied,
    ResourceDoesNotExist,
    Unauthenticated,
)
from aml_databricks.workspace.faults import FaultInjector, parse_faults
from aml_databricks.workspace.jobs import Jobs
from aml_databricks.workspace.long_poll import held_run_json
from aml_databricks.workspace.mlflow_api import UI_PREFIX, MlflowProxy, is_mlflow_path
from aml_databricks.workspace.models import FaultPlan, SecretPut, WorkspaceImport, parse
from aml_databricks.workspace.objects import Objects, decode_content
from aml_databricks.workspace.openapi import check_described, describe
from aml_databricks.workspace.pages.auth import signed_in
from aml_databricks.workspace.pages.export import export_run
from aml_databricks.workspace.pages.routes import page_routes
from aml_databricks.workspace.scheduler import Scheduler
from aml_databricks.workspace.secrets import Secrets
from aml_databricks.workspace.storage_api import FILE_API_PREFIXES, storage_routes
from aml_databricks.workspace.store import Store
from aml_databricks.workspace.tokens import TaskContext
from aml_databricks.workspace.wire import encode_json, read_params

JOB_VERSIONS = ("2.0", "2.1", "2.2")
WORKSPACE_ID = "1000000000000000"
USER = "local-user@localhost"
log = logging.getLogger(__name__)


@dataclass
class Call:
    """One API call: its parameters (query and body merged), version, and who made it."""

    params: dict[str, Any]
    version: str
    task: TaskContext | None  # set when the caller is a run in flight (a run token)
    request: Request

    def __getitem__(self, name: str) -> Any:
        return self.params.get(name)


Handler = Callable[[Call], Any]


class ApiJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return encode_json(content)


class Services:
    """What the handlers act on; built by the server and shared with the scheduler."""

    def __init__(self, store: Store, scheduler: Scheduler, token: str, *,
                 clusters: Callable[[], list[dict[str, Any]]] | None = None,
                 mounts: Callable[[], list[dict[str, str]]] | None = None,
                 mlflow: MlflowProxy | None = None,
                 cluster_action: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.scheduler = scheduler
        self.token = token
        self.jobs = Jobs(store, scheduler)
        self.objects = Objects(store)
        self.secrets = Secrets(store)
        self.clusters = clusters or (lambda: [])
        self.mounts = mounts or (lambda: [])
        self.mlflow = mlflow  # MLflow's API, forwarded to MLflow's own server (mlflow_api.py)
        # ("start" | "delete", cluster id): Clusters API start/terminate; ValueError for an unknown cluster
        self.cluster_action = cluster_action
        self.faults: FaultInjector | None = None  # set by build_app; the admin endpoint changes it


def build_app(services: Services, *, faults: str | None = None, faults_seed: int | None = None) -> FaultInjector:
    table = api_table(services)
    storage, files_api = storage_routes(services.scheduler.fs_table,
                                        lambda request: _authorize(request, services, "any"))
    table.update(storage)
    paths = {path for _, path in table}
    mlflow = services.mlflow.endpoint(lambda request: _authorize(request, services, "any")) if services.mlflow else None

    async def api(request: Request) -> Response:
        # one dict lookup instead of Starlette matching ~80 route patterns in turn on every poll
        endpoint = table.get((request.method, request.scope["path"]))
        if endpoint is not None:
            return await endpoint(request)
        if request.scope["path"].startswith(FILE_API_PREFIXES):
            return await files_api(request)
        if mlflow is not None and is_mlflow_path(request.scope["path"]):
            return await mlflow(request)
        problem: ApiError = EndpointNotFound(request.method, request.scope["path"])
        if request.scope["path"] in paths:
            problem = InvalidParameterValue(f"Method {request.method} is not allowed for {request.scope['path']}.")
            problem.status = 405
        return ApiJSON(problem.body(), status_code=problem.status)

    check_described(table)  # every route in the table, or the app is not built
    description: list[bytes] = []  # built on its first request: 30-70 ms of pydantic a start need not pay

    def openapi(_: Request) -> Response:
        if not description:
            description.append(encode_json(describe(table)))
        return Response(description[0], media_type="application/json")

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/.well-known/databricks-config", _well_known, methods=["GET"]),
        Route("/api/{rest:path}", api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/ajax-api/{rest:path}", api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),  # MLflow's UI calls
        *_mlflow_ui_routes(services),
        # the run page (run_page_url), runs list, workspace browser, login: workspace/pages/
        *page_routes(services.jobs, services.objects, services.scheduler.runs_dir, services.token),
    ]
    app: Any = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    injector = FaultInjector(app, parse_faults(faults), faults_seed,
                             exempt=lambda scope: _is_run_call(scope, services) or "/local/" in scope["path"])
    services.faults = injector
    return injector


# -- plumbing ------------------------------------------------------------------------------


def _mlflow_ui_routes(services: Services) -> list[Route]:
    """MLflow's web UI at /mlflow/ (mlflow_api.py), behind the pages' sign-in cookie."""
    if services.mlflow is None:
        return []
    ui = services.mlflow.ui_endpoint(lambda request: signed_in(request, services.token))
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [Route(UI_PREFIX, ui, methods=methods), Route(UI_PREFIX + "/{rest:path}", ui, methods=methods)]



def _bearer(headers: Any) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _is_run_call(scope: dict[str, Any], services: Services) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            token = _bearer({"authorization": value.decode("latin-1")})
            return token is not None and services.scheduler.task_for_token(token) is not None
    return False


def _authorize(request: Request, services: Services, who: str) -> TaskContext | None:
    token = _bearer(request.headers)
    if token is None:
        raise Unauthenticated("Missing or malformed Authorization header: send 'Authorization: Bearer <token>'.")
    if hmac.compare_digest(token.encode(), services.token.encode()):
        if who == "run":
            raise PermissionDenied("This call is only for notebooks and files running in the workspace.")
        return None
    task = services.scheduler.task_for_token(token)
    if task is None:
        raise PermissionDenied("Invalid access token.")
    return task


_OFF_LOOP = ("/jobs/runs/submit",)


def _endpoint(services: Services, handler: Handler, who: str = "any") -> Callable[[Request], Any]:
    async def route(request: Request) -> Response:
        try:
            task = _authorize(request, services, who)
            version = request.scope["path"].split("/")[2]  # /api/<version>/...
            call = Call(await read_params(request), version, task, request)
            # runs/submit (SQLite inserts, a thread started; the scheduler's own lock keeps it atomic) runs
            # on a worker thread: on the event loop, a burst of 1,000 kept every runs/get poll waiting
            # behind it (benchmarks/queue_burst.py). Other handlers stay serialised on the loop.
            off_loop = request.method == "POST" and request.scope["path"].endswith(_OFF_LOOP)
            result = await run_in_threadpool(handler, call) if off_loop else handler(call)
            if inspect.isawaitable(result):  # a held answer (long_poll.py)
                result = await result
        except ApiError as error:
            return ApiJSON(error.body(), status_code=error.status)
        except Exception as exc:  # a bug must still answer in Databricks' error shape
            log.exception("%s %s failed", request.method, request.scope["path"])
            internal = InternalError(f"Local workspace error: {type(exc).__name__}: {exc}")
            return ApiJSON(internal.body(), status_code=internal.status)
        return result if isinstance(result, Response) else ApiJSON(result)

    return route


async def _http_error(request: Request, exc: Exception) -> Response:
    problem = EndpointNotFound(request.method, request.url.path)
    return ApiJSON(problem.body(), status_code=problem.status)


def _well_known(request: Request) -> Response:
    host = str(request.base_url).rstrip("/")
    return ApiJSON({"oidc_endpoint": f"{host}/oidc", "workspace_id": WORKSPACE_ID})


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# -- routes --------------------------------------------------------------------------------


Endpoint = Callable[[Request], Awaitable[Response]]


def api_table(services: Services) -> dict[tuple[str, str], Endpoint]:
    """Every API endpoint by (method, path)."""
    jobs, objects, secrets = services.jobs, services.objects, services.secrets
    table: dict[tuple[str, str], Endpoint] = {}

    def route(path: str, handler: Handler, method: str = "GET", who: str = "any") -> None:
        table[(method, path)] = _endpoint(services, handler, who)

    def done(action: Callable[[Call], None]) -> Handler:
        """A handler for a verb whose answer is an empty object."""
        def handler(call: Call) -> dict[str, Any]:
            action(call)
            return {}
        return handler

    def export(call: Call) -> Any:
        content, file_type = objects.export(call["path"], call["format"])
        if _flag(call["direct_download"]):
            return Response(content, media_type="application/octet-stream")
        return {"content": base64.b64encode(content).decode(), "file_type": file_type}

    def import_(call: Call) -> dict[str, Any]:
        body = parse(WorkspaceImport, call.params)
        raw = body.content
        content = raw if isinstance(raw, bytes) else decode_content(raw)
        objects.import_(body.path, content, body.format, body.language, bool(body.overwrite))
        return {}

    def put_secret(call: Call) -> None:
        body = parse(SecretPut, call.params)
        secrets.put(body.scope, body.key, body.string_value, body.bytes_value)

    def run_secret(call: Call) -> dict[str, Any]:
        value = secrets.value_for_run(call["scope"], call["key"])
        return {"key": call["key"], "value": base64.b64encode(value).decode()}

    def set_task_value(call: Call) -> dict[str, Any]:
        assert call.task is not None
        if not isinstance(call["key"], str) or not call["key"]:
            raise InvalidParameterValue("key is required.")
        services.store.set_task_value(call.task.parent_run_id, call.task.task_key, call["key"],
                                      json.dumps(call["value"]))
        return {}

    def get_task_value(call: Call) -> dict[str, Any]:
        assert call.task is not None
        value = services.store.task_value(call.task.parent_run_id, str(call["task_key"]), str(call["key"]))
        if value is None:
            raise ResourceDoesNotExist(f"No task value {call['key']} from task {call['task_key']} in this run.")
        return {"value": json.loads(value)}

    def add_mount(call: Call) -> dict[str, Any]:
        point, source, local = call["mount_point"], call["source"], call["local_path"]
        if not isinstance(point, str) or not point.startswith("/mnt/") or ".." in point.split("/"):
            raise InvalidParameterValue(f"mount_point must be /mnt/<name>, got {point!r}.")
        if not isinstance(local, str) or not local.startswith("/"):
            raise InvalidParameterValue("local_path must be an absolute folder.")
        services.store.put_mount(point.rstrip("/"), str(source or f"file://{local}"), local)
        return {}

    def remove_mount(call: Call) -> dict[str, Any]:
        if not services.store.delete_mount(str(call["mount_point"]).rstrip("/")):
            raise ResourceDoesNotExist(f"Directory not mounted: {call['mount_point']}")
        return {}

    def cluster(call: Call) -> dict[str, Any]:
        for info in services.clusters():
            if info["cluster_id"] == call["cluster_id"]:
                return info
        raise InvalidParameterValue(f"Cluster {call['cluster_id']} does not exist")

    def cluster_action(action: str) -> Callable[[Call], dict[str, Any]]:
        def act(call: Call) -> dict[str, Any]:
            cluster_id = call["cluster_id"]
            if not isinstance(cluster_id, str) or not cluster_id:
                raise InvalidParameterValue("cluster_id is required.")
            if services.cluster_action is None:
                raise InvalidParameterValue(f"Cluster {cluster_id} does not exist")
            try:
                services.cluster_action(action, cluster_id)
            except ValueError:
                raise InvalidParameterValue(f"Cluster {cluster_id} does not exist") from None
            return {}

        return act

    def admin_faults(call: Call) -> dict[str, Any]:
        injector = services.faults
        assert injector is not None
        if call.request.method == "POST":
            body = parse(FaultPlan, call.params)
            try:
                plan = parse_faults(body.faults)
            except Exception as exc:
                raise InvalidParameterValue(str(exc)) from None
            injector.configure(plan, body.seed)
        return {"faults": injector.plan.describe()}

    def admin_inject(call: Call) -> dict[str, Any]:
        state = call["life_cycle_state"]
        if not isinstance(state, str) or not state:
            raise InvalidParameterValue("life_cycle_state is required.")
        if state == "INTERNAL_ERROR" and call["seconds"] is None:
            jobs.end_run(call["run_id"], str(call["state_message"] or "Injected INTERNAL_ERROR."))
        else:
            seconds = call["seconds"] or 5
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 86400:
                raise InvalidParameterValue(f"seconds must be a number of seconds up to a day, got {seconds!r}.")
            jobs.show_state(call["run_id"], state, float(seconds))
        return {}

    def me(call: Call) -> dict[str, Any]:
        return {"id": "1", "userName": USER, "displayName": "Local User", "active": True,
                "emails": [{"value": USER, "primary": True, "type": "work"}],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}

    route("/api/2.0/preview/scim/v2/Me", me)
    # workspace
    route("/api/2.0/workspace/get-status", lambda c: objects.status(c["path"]))
    route("/api/2.0/workspace/list", lambda c: {"objects": objects.list(c["path"])})
    route("/api/2.0/workspace/export", export)
    route("/api/2.0/workspace/import", import_, "POST")
    route("/api/2.0/workspace/mkdirs", done(lambda c: objects.mkdirs(c["path"])), "POST")
    route("/api/2.0/workspace/delete", done(lambda c: objects.delete(c["path"], _flag(c["recursive"]))), "POST")
    # secrets
    route("/api/2.0/secrets/scopes/create",
          done(lambda c: secrets.create_scope(c["scope"], c["scope_backend_type"])), "POST")
    route("/api/2.0/secrets/scopes/list", lambda c: {"scopes": secrets.list_scopes()})
    route("/api/2.0/secrets/scopes/delete", done(lambda c: secrets.delete_scope(c["scope"])), "POST")
    route("/api/2.0/secrets/put",
          done(put_secret), "POST")
    route("/api/2.0/secrets/list", lambda c: {"secrets": secrets.list(c["scope"])})
    route("/api/2.0/secrets/delete", done(lambda c: secrets.delete(c["scope"], c["key"])), "POST")
    route("/api/2.0/secrets/get", run_secret)  # the workspace's user and its runs, as on Databricks
    # clusters
    for version in ("2.0", "2.1"):  # the CLI and Airflow call 2.0, databricks-sdk 2.1
        route(f"/api/{version}/clusters/list", lambda c: {"clusters": services.clusters()})
        route(f"/api/{version}/clusters/get", cluster)
        route(f"/api/{version}/clusters/start", cluster_action("start"), "POST")
        route(f"/api/{version}/clusters/delete", cluster_action("delete"), "POST")
    # calls back from runs in flight, and the admin's knobs
    route("/api/2.0/local/secrets/get", run_secret, who="run")
    route("/api/2.0/local/task-values/set", set_task_value, "POST", who="run")
    route("/api/2.0/local/task-values/get", get_task_value, who="run")
    route("/api/2.0/local/mounts", lambda c: {"mounts": services.mounts()})
    route("/api/2.0/local/mounts", add_mount, "POST")
    route("/api/2.0/local/mounts/delete", remove_mount, "POST")
    route("/api/2.0/local/admin/faults", admin_faults, who="user")
    route("/api/2.0/local/admin/faults", admin_faults, "POST", who="user")
    route("/api/2.0/local/admin/inject", admin_inject, "POST", who="user")
    async def held_run(c: Call) -> Response:  # runs/get, with the optional wait_seconds long-poll
        body = await held_run_json(jobs, c["run_id"], c.version, c["wait_seconds"], _flag(c["include_history"]),
                                   c["seen_life_cycle_state"])
        return Response(body, media_type="application/json")

    for version in JOB_VERSIONS:
        base = f"/api/{version}/jobs"
        route(f"{base}/runs/submit", lambda c: jobs.submit(c.params, from_run=c.task is not None), "POST")
        route(f"{base}/runs/get", held_run)
        route(f"{base}/runs/get-output", lambda c: jobs.get_output(c["run_id"], c.version))
        route(f"{base}/runs/cancel", lambda c: jobs.cancel(c["run_id"]), "POST")
        route(f"{base}/runs/delete", lambda c: jobs.delete_run(c["run_id"]), "POST")
        route(f"{base}/runs/cancel-all", lambda c: jobs.cancel_all(c.params), "POST")
        route(f"{base}/runs/repair", lambda c: jobs.repair_run(c.params), "POST")
        route(f"{base}/reset", lambda c: jobs.reset_job(c.params), "POST")
        route(f"{base}/update", lambda c: jobs.update_job(c.params), "POST")
        route(f"{base}/runs/list", lambda c: jobs.list_runs(c.params))
        route(f"{base}/runs/export", lambda c: export_run(jobs, services.scheduler.runs_dir, c["run_id"],
                                                          c["views_to_export"]))
        route(f"{base}/create", lambda c: jobs.create_job(c.params), "POST")
        route(f"{base}/get", lambda c: jobs.get_job(c["job_id"]))
        route(f"{base}/list", lambda c: jobs.list_jobs(c.params))
        route(f"{base}/delete", lambda c: jobs.delete_job(c["job_id"]), "POST")
        route(f"{base}/run-now", lambda c: jobs.run_now(c.params), "POST")
    return table
