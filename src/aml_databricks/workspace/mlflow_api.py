"""The workspace's MLflow API: `/api/2.0/mlflow/*` (and `/ajax-api/...`), and MLflow's web UI under `/mlflow/`,
answered by MLflow's own server.

MLflow's REST API is Databricks' (same paths, same `{"error_code", "message"}` errors), so rather than
re-implement it the workspace forwards these calls, once their token is checked, to MLflow's tracking
server running beside it (`mlflow_backend.py`, one process per workspace on a Unix socket). That
process starts on the first MLflow call, not with the workspace, and stops with it.

MLflow's web UI is served under `UI_PREFIX` (`/mlflow/`, linked from the run pages): the prefix is taken off
and the rest forwarded, so the UI's page, its static files and its `ajax-api/...` calls (relative URLs,
hash routing) all reach the same server. Like the run pages it needs the sign-in cookie (pages/auth.py),
not a bearer token; a browser without it is sent to `/login`.

What is not forwarded:
- Unity Catalog's model registry (`/api/2.0/mlflow/unity-catalog/...`), the default registry of MLflow 3
  for the `databricks` tracking URI: MLflow's server has no such endpoints, and a client writes those
  models straight to cloud storage. The answer names the fix: `mlflow.set_registry_uri("databricks")`.
- the `Authorization` header and cookies: MLflow's server has no users here; the token and the session stop at
  the workspace. A UI call's `Origin` neither: the cookie (SameSite=Strict) already kept other sites out.

Without full `mlflow` installed (the step's light install has only mlflow-skinny) every MLflow call
answers 501 NOT_IMPLEMENTED naming `pip install 'aml-databricks[mlflow]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse

from aml_databricks.compute.host import lifeline
from aml_databricks.workspace.errors import ApiError, InternalError

UI_PREFIX = "/mlflow"
MLFLOW_PREFIXES = ("/api/2.0/mlflow/", "/api/3.0/mlflow/", "/ajax-api/2.0/mlflow/", "/ajax-api/3.0/mlflow/")
UNITY_CATALOG_PREFIXES = tuple(prefix + "unity-catalog/" for prefix in MLFLOW_PREFIXES)
START_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 5.0
# Headers of one connection, not of the message (RFC 9110 §7.6.1), and the token, which MLflow must not see.
_NOT_FORWARDED = frozenset({"authorization", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                            "te", "trailer", "transfer-encoding", "upgrade", "cookie"})
_NOT_FORWARDED_FROM_UI = _NOT_FORWARDED | {"origin"}
UI_NOT_INSTALLED = ("MLflow's web UI needs full MLflow with this local workspace: pip install 'aml-databricks[mlflow]' "
                    "and restart it.")
log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
Authorize = Callable[[Request], object]


class MlflowNotInstalled(ApiError):
    status = 501
    error_code = "NOT_IMPLEMENTED"

    def __init__(self) -> None:
        super().__init__("MLflow's tracking server is not installed with this local workspace: "
                         "pip install 'aml-databricks[mlflow]' and restart it.")


class UnityCatalogRegistryNotServed(ApiError):
    status = 501
    error_code = "NOT_IMPLEMENTED"

    def __init__(self) -> None:
        super().__init__("The Unity Catalog model registry is not served by the local workspace (aml-databricks). "
                         "Use the workspace model registry: mlflow.set_registry_uri(\"databricks\") "
                         "or MLFLOW_REGISTRY_URI=databricks.")


def is_mlflow_path(path: str) -> bool:
    return path.startswith(MLFLOW_PREFIXES)


class MlflowProxy:
    """Starts MLflow's tracking server for one data dir on first use and forwards calls to it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "mlflow" / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: str | None = None
        self._client: Any = None  # an httpx.AsyncClient on the socket, made on the event loop that uses it
        self._lock: asyncio.Lock | None = None

    @property
    def server_pid(self) -> int | None:
        """The pid of MLflow's tracking server while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    # -- the endpoint ---------------------------------------------------------------------

    def endpoint(self, authorize: Authorize) -> Endpoint:
        """One endpoint for every path under MLFLOW_PREFIXES, authorised like the rest of the API."""
        async def forward(request: Request) -> Response:
            try:
                authorize(request)
                if request.scope["path"].startswith(UNITY_CATALOG_PREFIXES):
                    raise UnityCatalogRegistryNotServed()
                return await self._forward(request)
            except ApiError as error:
                return JSONResponse(error.body(), status_code=error.status)
            except Exception as exc:  # a bug (or a server that can't be started) still answers in Databricks' shape
                log.exception("%s %s failed", request.method, request.scope["path"])
                internal = InternalError(f"Local workspace error: {type(exc).__name__}: {exc}")
                return JSONResponse(internal.body(), status_code=internal.status)
        return forward

    def ui_endpoint(self, signed_in: Callable[[Request], bool]) -> Endpoint:
        """MLflow's web UI under UI_PREFIX, for a browser signed in to the pages."""
        async def ui(request: Request) -> Response:
            path = request.scope["raw_path"].decode("latin-1")
            if not signed_in(request):
                if request.method != "GET" or "/ajax-api/" in path:
                    return JSONResponse({"error": "sign in first"}, status_code=401)
                return RedirectResponse("/login?next=" + quote(UI_PREFIX + "/", safe="/"), status_code=303)
            if path == UI_PREFIX:
                return RedirectResponse(UI_PREFIX + "/", status_code=307)
            try:
                return await self._forward(request, path[len(UI_PREFIX):], _NOT_FORWARDED_FROM_UI)
            except MlflowNotInstalled:
                return PlainTextResponse(UI_NOT_INSTALLED + "\n", status_code=501)
            except ApiError as error:
                return JSONResponse(error.body(), status_code=error.status)
            except Exception as exc:
                log.exception("%s %s failed", request.method, path)
                return PlainTextResponse(f"Local workspace error: {type(exc).__name__}: {exc}\n", status_code=500)
        return ui

    async def _forward(self, request: Request, path: str | None = None,
                       not_forwarded: frozenset[str] = _NOT_FORWARDED) -> Response:
        import httpx

        headers = [(name, value) for name, value in request.headers.raw
                   if name.decode("latin-1").lower() not in not_forwarded]
        query = request.scope.get("query_string", b"").decode("latin-1")
        path = request.scope["raw_path"].decode("latin-1") if path is None else path
        target = path + ("?" + query if query else "")
        # a read's (empty) body is kept so that the read can be repeated; any other body streams through
        content: Any = await request.body() if request.method in ("GET", "HEAD") else None
        for attempt in (1, 2):
            client = await self._started()
            outgoing = client.build_request(request.method, target, headers=headers,
                                            content=request.stream() if content is None else content)
            try:
                answer = await client.send(outgoing, stream=True)
                break
            except httpx.TransportError as exc:
                # Not listening (nothing was sent), or a read that may be repeated: the server is dying or
                # dead; once it is gone, the next attempt starts a new one. A write is left to the client's
                # retry, which MLflow's client does for a 500.
                retry = isinstance(exc, httpx.ConnectError) or content is not None
                if attempt == 2 or not retry:
                    raise InternalError(f"MLflow's tracking server did not answer ({type(exc).__name__}): "
                                        f"see {self.log_path}.") from None
                await asyncio.to_thread(self._wait_exit)
        response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code,
                                     background=BackgroundTask(answer.aclose))
        response.raw_headers = [(name.encode("latin-1"), value.encode("latin-1"))
                                for name, value in answer.headers.multi_items() if name.lower() not in _NOT_FORWARDED]
        return response

    def _wait_exit(self) -> None:
        """Give a server that stopped answering a moment to exit, so that it is seen as gone."""
        process = self._process
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1.0)

    # -- the server's life ----------------------------------------------------------------

    async def _started(self) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._process is not None and self._process.poll() is None and self._client is not None:
                return self._client
            if self._process is not None:
                log.warning("MLflow's tracking server exited (code %s): starting it again", self._process.poll())
                self.close()
            await self._start()
            return self._client

    async def _start(self) -> None:
        try:
            importlib.metadata.distribution("mlflow")
            import httpx
        except (importlib.metadata.PackageNotFoundError, ImportError):
            raise MlflowNotInstalled() from None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # a Unix socket path must stay under ~100 bytes: a short private folder, not the data dir
        self._socket_dir = tempfile.mkdtemp(prefix="aml-databricks-mlflow-")
        socket_path = os.path.join(self._socket_dir, "server.sock")
        with self.log_path.open("ab") as log_file:
            # dies with the workspace, however it ends (lifeline.py), and so does what it starts
            self._process = lifeline.popen(
                [sys.executable, "-m", "aml_databricks.workspace.mlflow_backend", str(self.data_dir), socket_path],
                death_signal=signal.SIGTERM,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path), base_url="http://mlflow",
                                   timeout=httpx.Timeout(None, connect=10.0))
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
        while True:
            if self._process.poll() is not None:
                await client.aclose()
                raise InternalError(f"MLflow's tracking server did not start (exit code {self._process.poll()}): "
                                    f"see {self.log_path}.")
            if os.path.exists(socket_path):
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            if asyncio.get_running_loop().time() > deadline:
                await client.aclose()
                self.close()
                raise InternalError(f"MLflow's tracking server did not start in {START_TIMEOUT_SECONDS:.0f} s: "
                                    f"see {self.log_path}.")
            await asyncio.sleep(0.05)
        self._client = client
        log.info("MLflow's tracking server is up (pid %d), its store in %s", self._process.pid,
                 self.data_dir / "mlflow")

    def close(self) -> None:
        """Stop the server (its whole process group) and forget it; a later call starts a new one."""
        process, self._process, self._client = self._process, None, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
