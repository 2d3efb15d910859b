"""The local workspace as a running service: `LocalWorkspace` starts it on loopback in the background.

    with LocalWorkspace(data_dir=".aml-databricks") as ws:
        ws.client.jobs.submit(...)      # a databricks-sdk WorkspaceClient, ready to use

`aml-databricks workspace serve` is the same object run in the foreground.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from aml_databricks.compute.executor import Executor, SparkProvider
from aml_databricks.compute.host.private import private_folder
from aml_databricks.compute.protocol import FileSystem
from aml_databricks.errors import UsageError
from aml_databricks.workspace.app import Services, build_app
from aml_databricks.workspace.objects import Objects
from aml_databricks.workspace.scheduler import Scheduler
from aml_databricks.workspace.store import Store

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

TOKEN_ENV = "AML_DATABRICKS_LOCAL_TOKEN"
DEFAULT_DATA_DIR = Path(".aml-databricks")
log = logging.getLogger(__name__)


def resolve_token(data_dir: Path, token: str | None) -> tuple[str, str]:
    """(token, where it came from): the flag, the environment, or a file generated once (mode 0600)."""
    if token:
        return token, "--token"
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], f"${TOKEN_ENV}"
    path = data_dir / "token"
    if path.exists():
        return path.read_text().strip(), str(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = "dapi" + secrets.token_hex(16)  # shaped like a Databricks PAT
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(generated + "\n")
    return generated, str(path)


def parse_mapping(items: list[str] | None, what: str) -> dict[str, Path]:
    """`["/mnt/x=./folder", ...]` → {"/mnt/x": absolute folder}; the folders are created."""
    mapping: dict[str, Path] = {}
    for item in items or []:
        key, sep, folder = item.partition("=")
        if not sep or not key or not folder:
            raise UsageError(f"{what} {item!r} is not NAME=FOLDER")
        path = Path(folder).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        mapping[key.rstrip("/")] = path
    return mapping


class LocalWorkspace:
    """A local Azure Databricks workspace on loopback, persisted under `data_dir`."""

    def __init__(
        self,
        data_dir: str | Path = DEFAULT_DATA_DIR,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        mounts: dict[str, str | Path] | None = None,
        storage: dict[str, str | Path] | None = None,
        spark: bool | SparkProvider = False,
        executor: Executor | None = None,
        max_concurrent_tasks: int = 4,
        faults: str | None = None,
        faults_seed: int | None = None,
    ) -> None:
        self.data_dir = private_folder(Path(data_dir).resolve())  # the token, run output: the user's alone
        self.token, self.token_source = resolve_token(self.data_dir, token)
        self._bind = (host, port)
        self.mounts = {k.rstrip("/"): Path(v).resolve() for k, v in (mounts or {}).items()}
        self.storage = {k.rstrip("/"): Path(v).resolve() for k, v in (storage or {}).items()}
        self._spark_option = spark
        self._executor = executor
        self._max_concurrent_tasks = max_concurrent_tasks
        self._faults = (faults, faults_seed)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: WorkspaceClient | None = None
        self.host = ""

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> LocalWorkspace:
        self.store = Store(self.data_dir / "workspace.db")
        for folder in self.mounts.values():
            folder.mkdir(parents=True, exist_ok=True)
        for point, folder in self.mounts.items():
            self.store.put_mount(point, f"file://{folder}", str(folder))
        self.spark = self._make_spark()
        executor = self._executor or self._default_executor()
        self.executor = executor
        objects = Objects(self.store)
        self.scheduler = Scheduler(self.store, executor, runs_dir=self.data_dir / "runs",
                                   resolve_source=objects.source, fs_table=self.fs_table,
                                   max_concurrent_tasks=self._max_concurrent_tasks)
        recovered = self.scheduler.recover()
        if recovered:
            log.warning("%d run(s) were in flight when the workspace last stopped: marked INTERNAL_ERROR", recovered)

        sock = socket.socket(socket.AF_INET6 if ":" in self._bind[0] else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # h11 writes a response head and body separately: without this, Nagle + delayed ACK add 40 ms
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind(self._bind)
        except OSError as exc:
            raise UsageError(f"cannot listen on {self._bind[0]}:{self._bind[1]}: {exc.strerror}") from None
        port = sock.getsockname()[1]
        shown_host = f"[{self._bind[0]}]" if ":" in self._bind[0] else self._bind[0]
        self.host = f"http://{shown_host}:{port}"
        self.scheduler.host = self.host

        services = Services(self.store, self.scheduler, self.token, clusters=self._clusters,
                            mounts=self._mount_list)
        app = build_app(services, faults=self._faults[0], faults_seed=self._faults[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="local-workspace-http", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the local workspace's HTTP server failed to start")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.scheduler.close()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.executor.close()
        if self.spark is not None:
            self.spark.close()
        self.store.close()
        self._server = None

    def __enter__(self) -> LocalWorkspace:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- what users get -------------------------------------------------------------------

    @property
    def client(self) -> WorkspaceClient:
        """A databricks-sdk WorkspaceClient for this workspace (short retry budget: it is local)."""
        if self._client is None:
            from databricks.sdk import WorkspaceClient
            from databricks.sdk.core import Config

            self._client = WorkspaceClient(config=Config(host=self.host, token=self.token, auth_type="pat",
                                                         retry_timeout_seconds=60))
        return self._client

    def fs_table(self) -> dict[str, Any]:
        """The driver protocol's `fs` object: where DBFS, volumes, mounts and storage URIs live locally."""
        mounts = {point: local for point, (_, local) in self.store.mounts().items()}
        storage = {uri: str(path) for uri, path in self.storage.items()}
        return FileSystem.of_data_dir(self.data_dir, mounts, storage).to_json()

    # -- parts ----------------------------------------------------------------------------

    def _make_spark(self) -> SparkProvider | None:
        if self._spark_option is False:
            return None
        if self._spark_option is True:
            from aml_databricks.compute.host.pool import ClusterPool

            return ClusterPool(self.data_dir)
        return self._spark_option

    def _default_executor(self) -> Executor:
        from aml_databricks.compute.host.libraries import LibraryInstaller
        from aml_databricks.compute.host.process import DriverExecutor

        # With Spark, fork drivers from a warm parent that has pyspark imported: 0.5 s a run instead of 1.6 s.
        return DriverExecutor(self.data_dir, spark=self.spark, libraries=LibraryInstaller(self.data_dir).install,
                              prefork=self.spark is not None)

    def _clusters(self) -> list[dict[str, Any]]:
        from aml_databricks.compute.host.pool import ClusterPool

        if isinstance(self.spark, ClusterPool):
            from aml_databricks.workspace import clusters

            return clusters.describe(self.spark)
        return [{"cluster_id": "local", "cluster_name": "local", "state": "RUNNING",
                 "spark_version": "local", "num_workers": 0, "cluster_source": "UI"}]

    def _mount_list(self) -> list[dict[str, str]]:
        return [{"mountPoint": p, "source": s, "local_path": local} for p, (s, local) in self.store.mounts().items()]
