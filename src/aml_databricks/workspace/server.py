"""The local workspace as a running service: `LocalWorkspace` starts it on loopback in the background.

    with LocalWorkspace(data_dir=".aml-databricks") as ws:
        ws.client.jobs.submit(...)      # a databricks-sdk WorkspaceClient, ready to use

`aml-databricks workspace serve` is the same object run in the foreground.

One process owns a data dir (`workspace/lock.py`). A `LocalWorkspace` whose data dir is already
served by a live process *borrows* that workspace instead of opening the same state twice: no
second Spark, no second Derby metastore. It says so in one line, talks to the running server
through its API, adds the mounts it was asked for there and puts the previous ones back when it
stops. `if_running="fail"` (what `serve` uses) refuses instead.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import uvicorn

from aml_databricks.compute.executor import Executor, SparkProvider
from aml_databricks.compute.host.private import private_folder
from aml_databricks.compute.protocol import FileSystem
from aml_databricks.errors import UsageError
from aml_databricks.workspace.app import Services, build_app
from aml_databricks.workspace.lock import DataDirLock, RunningWorkspace, WorkspaceInUseError, running_workspace
from aml_databricks.workspace.mlflow_api import MlflowProxy
from aml_databricks.workspace.objects import Objects
from aml_databricks.workspace.scheduler import Scheduler
from aml_databricks.workspace.storage_paths import StoragePaths
from aml_databricks.workspace.store import Store

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from aml_databricks.compute.host.pool import ClusterPool
    from aml_databricks.workspace.gateway import Gateway, Resolve

TOKEN_ENV = "AML_DATABRICKS_LOCAL_TOKEN"
# Spark Connect's own default port: `sc://localhost` without a port means it.
DEFAULT_SPARK_CONNECT_PORT = 15002
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
        spark: bool | SparkProvider = True,
        executor: Executor | None = None,
        max_concurrent_tasks: int = 4,
        faults: str | None = None,
        faults_seed: int | None = None,
        if_running: Literal["use", "fail"] = "use",
        say: Callable[[str], None] | None = None,
        spark_connect_port: int | None = 0,
        tls: bool = False,
    ) -> None:
        """`spark=False` runs notebooks without Spark (no `spark` global; starts in well under a second).
        `if_running`: what to do when a live process already serves `data_dir` — use it, or raise
        `WorkspaceInUseError`. `say` prints the one-line notices (default: stderr).
        `spark_connect_port`: where the default cluster's Spark Connect address listens (gateway.py); 0 a
        free port; None 15002 (Spark Connect's default, what `workspace serve` uses), or a free port if
        that one is taken. `tls`: serve HTTPS and gRPC on the
        workspace's port too, with a local CA in DATA_DIR/tls (tls.py), for databricks-connect's host mode."""
        self.data_dir = private_folder(Path(data_dir).resolve())  # the token, run output: the user's alone
        self._token_option = token
        self.token, self.token_source = "", ""
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
        self._if_running = if_running
        self._say = say or _to_stderr
        self._lock = DataDirLock(self.data_dir)
        self._restore_mounts: dict[str, tuple[str, str] | None] = {}
        self.borrowed: RunningWorkspace | None = None  # the live workspace used instead of starting one
        self.host = ""  # http://: plain HTTP works on the workspace's port with and without TLS
        self._spark_connect_port = spark_connect_port
        self._tls = tls
        self.https_host = ""  # with TLS: the same port as https://
        self.ca_file: Path | None = None  # with TLS: the certificate clients trust
        self.spark_connect = ""  # sc://host:port of the default cluster, when Spark is the cluster pool
        self._gateway: Gateway | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> LocalWorkspace:
        while not self._lock.acquire():
            running = running_workspace(self.data_dir, wait_s=30)
            if running is None:
                continue  # its owner ended between our two looks: the lock is free now
            if self._if_running == "fail":
                raise WorkspaceInUseError(f"{self.data_dir} is already served by the workspace at "
                                          f"{running.describe()}; stop it first or use another data dir")
            self._borrow(running)
            return self
        try:
            self._start_owned()
        except BaseException:  # a stop signal may strike mid-start: close what had started
            self._close_parts()
            raise
        # An injected executor may bring its own Spark: only a workspace known to lack it says so.
        self._lock.publish(self.host, self.token, spark=self.spark is not None or self._executor is not None)
        return self

    def _start_owned(self) -> None:
        self.token, self.token_source = resolve_token(self.data_dir, self._token_option)
        self.store = Store(self.data_dir / "workspace.db")
        for folder in self.mounts.values():
            folder.mkdir(parents=True, exist_ok=True)
        for point, folder in self.mounts.items():
            self.store.put_mount(point, f"file://{folder}", str(folder))
        self.spark = self._make_spark()
        executor = self._executor or self._default_executor()
        self.executor = executor
        objects = Objects(self.store, StoragePaths(self.fs_table))
        self.scheduler = Scheduler(self.store, executor, runs_dir=self.data_dir / "runs",
                                   resolve_source=objects.source, fs_table=self.fs_table,
                                   max_concurrent_tasks=self._max_concurrent_tasks)
        recovered = self.scheduler.recover()
        if recovered:
            log.warning("%d run(s) were in flight when the workspace last stopped: marked INTERNAL_ERROR", recovered)

        try:
            sock = _listening_socket(self._bind)
        except OSError as exc:
            raise UsageError(f"cannot listen on {self._bind[0]}:{self._bind[1]}: {exc.strerror}") from None
        port = sock.getsockname()[1]
        shown_host = f"[{self._bind[0]}]" if ":" in self._bind[0] else self._bind[0]
        self.host = f"http://{shown_host}:{port}"
        self.scheduler.host = self.host
        rest_sock = self._open_gateway(sock, shown_host, port) if self._tls or self._pool() is not None else sock

        self.mlflow = MlflowProxy(self.data_dir)  # its server starts on the first MLflow call
        services = Services(self.store, self.scheduler, self.token, clusters=self._clusters,
                            mounts=self._mount_list, mlflow=self.mlflow, cluster_action=self._cluster_action)
        app = build_app(services, faults=self._faults[0], faults_seed=self._faults[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [rest_sock]},
                                        name="local-workspace-http", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the local workspace's HTTP server failed to start")
            threading.Event().wait(0.01)

    def _pool(self) -> ClusterPool | None:
        from aml_databricks.compute.host.pool import ClusterPool

        spark = getattr(self, "spark", None)
        return spark if isinstance(spark, ClusterPool) else None

    def _open_gateway(self, sock: socket.socket, shown_host: str, port: int) -> socket.socket:
        """Start the gateway (gateway.py): the Spark Connect address, and with TLS the front door on
        `sock`. Returns the socket the REST server is to serve: `sock`, or with TLS a private one."""
        from aml_databricks.workspace.gateway import Gateway

        self._gateway = gateway = Gateway()
        pool = self._pool()
        spark = self._spark_target(pool) if pool is not None else _no_spark
        if pool is not None:
            connect_sock = _listen_spark_connect(self._bind[0], self._spark_connect_port, self._say)
            self.spark_connect = f"sc://{shown_host}:{connect_sock.getsockname()[1]}"
            gateway.serve_spark_connect(connect_sock, spark)
        if not self._tls:
            return sock
        from aml_databricks.workspace.gateway import ALPN_PROTOCOLS
        from aml_databricks.workspace.tls import ensure_tls

        files = ensure_tls(self.data_dir, self._bind[0])
        self.ca_file = files.ca
        self.https_host = f"https://{shown_host}:{port}"
        rest_sock = _listening_socket(("127.0.0.1", 0))
        gateway.serve_front(sock, files.server_context(ALPN_PROTOCOLS), spark, rest_sock.getsockname()[:2])
        return rest_sock

    @staticmethod
    def _spark_target(pool: ClusterPool) -> Resolve:
        def resolve() -> tuple[tuple[str, int], Callable[[], None]]:
            server = pool.outside_server()
            return ("127.0.0.1", server.port), lambda: pool.touch(server)

        return resolve

    def _cluster_action(self, action: str, cluster_id: str) -> None:
        """Clusters API `start` (without waiting) and `delete` (terminate; the cluster stays listed)."""
        pool = self._pool()
        if pool is None:
            if cluster_id != "local":
                raise ValueError(f"cluster {cluster_id!r} does not exist (the local default is 'local')")
            return  # without the pool, the one cluster is always "running"
        if action == "start":
            pool.start_in_background(cluster_id)
        elif not pool.stop(cluster_id) and cluster_id != "local" and cluster_id not in pool.known_clusters():
            raise ValueError(f"cluster {cluster_id!r} does not exist")

    def _borrow(self, running: RunningWorkspace) -> None:
        if self._spark_option is not False and not running.spark:
            raise WorkspaceInUseError(f"{self.data_dir} is served without Spark by {running.describe()}; "
                                      "stop it, or start it without --no-spark")
        if self._token_option and self._token_option != running.token:
            raise WorkspaceInUseError(f"{self.data_dir} is served by {running.describe()} with another token")
        self.borrowed = running
        self.host, self.token, self.token_source = running.host, running.token, "the running workspace"
        self._say(f"using the local workspace already running on {self.data_dir}: {running.describe()}")
        if self.mounts:
            current = {m["mountPoint"]: (m["source"], m["local_path"]) for m in self._api("GET", "mounts")["mounts"]}
            for point, folder in self.mounts.items():
                folder.mkdir(parents=True, exist_ok=True)
                self._restore_mounts.setdefault(point, current.get(point))
                self._api("POST", "mounts", {"mount_point": point, "source": f"file://{folder}",
                                             "local_path": str(folder)})

    def _give_back(self) -> None:
        """Put the borrowed workspace's mounts back as they were."""
        for point, previous in self._restore_mounts.items():
            try:
                if previous is None:
                    self._api("POST", "mounts/delete", {"mount_point": point})
                else:
                    self._api("POST", "mounts", {"mount_point": point, "source": previous[0],
                                                 "local_path": previous[1]})
            except Exception as error:  # the server may have stopped meanwhile: nothing left to restore
                log.warning("could not restore mount %s on %s: %s", point, self.host, error)
        self._restore_mounts.clear()
        self.borrowed = None

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.api_client.do(method, f"/api/2.0/local/{path}", body=body)

    def stop(self) -> None:
        if self.borrowed is not None:
            self._give_back()
            return
        if self._server is None:
            return
        self._close_parts()

    def _close_parts(self) -> None:
        """Close whatever of the owned workspace has started, in reverse order; release the data dir."""
        try:
            scheduler = getattr(self, "scheduler", None)
            if scheduler is not None:
                scheduler.close()
            if self._server is not None:
                self._server.should_exit = True
                if self._thread is not None:
                    self._thread.join(10)
            if self._gateway is not None:
                self._gateway.close()
                self._gateway = None
            mlflow = getattr(self, "mlflow", None)
            if mlflow is not None:
                mlflow.close()
            executor = getattr(self, "executor", None)
            if executor is not None:
                executor.close()
            spark = getattr(self, "spark", None)
            if spark is not None:
                spark.close()
            store = getattr(self, "store", None)
            if store is not None:
                store.close()
            self._server = None
        finally:
            self._lock.release()

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

            return clusters.describe(self.spark, self.spark_connect)
        return [{"cluster_id": "local", "cluster_name": "local", "state": "RUNNING",
                 "spark_version": "local", "num_workers": 0, "cluster_source": "UI"}]

    def _mount_list(self) -> list[dict[str, str]]:
        return [{"mountPoint": p, "source": s, "local_path": local} for p, (s, local) in self.store.mounts().items()]


def _listening_socket(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # h11 writes a response head and body separately: without this, Nagle + delayed ACK add 40 ms
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _listen_spark_connect(host: str, port: int | None, say: Callable[[str], None]) -> socket.socket:
    """The Spark Connect address's socket: `port`, or for None the default port, else a free one."""
    wanted = DEFAULT_SPARK_CONNECT_PORT if port is None else port
    try:
        return _listening_socket((host, wanted))
    except OSError as exc:
        if port is not None:
            raise UsageError(f"cannot listen for Spark Connect on {host}:{port}: {exc.strerror}") from None
    sock = _listening_socket((host, 0))
    say(f"port {DEFAULT_SPARK_CONNECT_PORT} is taken: Spark Connect listens on {sock.getsockname()[1]} instead")
    return sock


def _no_spark() -> tuple[tuple[str, int], Callable[[], None]]:
    raise ConnectionRefusedError("this workspace runs without Spark (--no-spark)")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
