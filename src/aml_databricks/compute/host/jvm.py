"""Spark Connect server JVMs: how one is started, when it is ready, how the host talks to it, and finding
the ones a crashed workspace left behind.

What each server is given (`JvmLauncher.server_confs`):
- DBFS: Hadoop ViewFS with `<data_dir>/dbfs` as the fallback of the mount table, so Spark's `/x`
  lands in `<data_dir>/dbfs/x`. A mount is one more link, which works as a *session* conf
  (`fs.viewfs.mounttable.dbfs.link./mnt/x=file:///...`, measured): mounts need no server restart.
- Tables: the Hive catalog, its Derby metastore in `<data_dir>/metastore`, the warehouse under
  DBFS. Derby (embedded) lets one JVM open the metastore at a time, so only the default server
  uses it; a dedicated server gets a private metastore in `clusters/<id>/metastore` and a private
  warehouse in `dbfs/local_clusters/<id>/warehouse`.
- Parallelism: `local[*]` on the shared server, `local[N]` on a dedicated one (cluster_specs.py).

`Launcher` is the seam the pool (pool.py) starts servers through; tests give it processes that are not JVMs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aml_databricks.compute import pyworkers
from aml_databricks.compute.host import lifeline, procs
from aml_databricks.compute.host.cluster_specs import DEFAULT_CLUSTER_ID
from aml_databricks.compute.host.private import open_private, private_folder
from aml_databricks.compute.protocol import dbfs_root
from aml_databricks.delta.server import server_setup as delta_server_setup
from aml_databricks.errors import AmlDatabricksError

log = logging.getLogger(__name__)

CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
START_TIMEOUT_S = 180.0
CONTROL_DEADLINE_S = 10.0
# A fixed user id in the remote: the driver and the pool's interrupt client must name the same
# (user, session) pair, whatever USER their environments hold.
CONNECT_USER_ID = "aml-databricks"
# Marks our JVMs on their command line, so a pool can find servers left by a crashed predecessor.
_MARK_DATA_DIR = "-Daml_databricks.data_dir="
_MARK_OWNER = "-Daml_databricks.owner="


class ClusterStartError(AmlDatabricksError):
    """A Spark Connect server did not come up; the message ends with its log's last lines."""


class ControlClient(Protocol):
    """The calls the host makes on a run's session, besides the driver's own: cancel and clean-up."""

    def interrupt_all(self) -> Any: ...

    def release_session(self) -> Any: ...

    def close(self) -> Any: ...


class Launcher(Protocol):
    """How the pool gets a server up; `JvmLauncher` starts real Spark Connect JVMs."""

    def start(self, server: Server) -> None:
        """Start the server's process without waiting for it: set `server.port` and `server.process`."""

    def wait_ready(self, server: Server, closed: threading.Event) -> None:
        """Block until the server answers queries; raise ClusterStartError if it won't (or `closed` is set)."""

    def control_client(self, remote: str) -> ControlClient:
        """A client for control calls on the session of `remote`, quick to give up."""

    def session_released(self, server: Server, server_session_id: str) -> None:
        """A session of `server` (by the server's own id for it) was released: free what it held."""


@dataclass
class Server:
    """One Spark Connect server: what the pool counts on it and the JVM process behind it."""

    cluster_id: str
    spec: dict[str, Any]
    static: dict[str, str]
    cores: int
    state: str = "PENDING"  # PENDING -> RUNNING -> TERMINATING; ERROR when the start failed
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    leases: int = 0
    last_used: float = field(default_factory=time.monotonic)
    start_time_ms: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    startup_s: dict[str, float] = field(default_factory=dict)  # phase -> seconds, for describe()
    pyworkers: subprocess.Popen[bytes] | None = None  # the warm parent of its Python daemons (compute/pyworkers.py)
    pyworkers_socket: str = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def remote(self, session_id: str) -> str:
        return f"sc://127.0.0.1:{self.port}/;session_id={session_id};user_id={CONNECT_USER_ID}"


def pyspark_home() -> Path:
    """The pyspark install folder: it holds bin/spark-submit and the Spark Connect server jar."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def control_client(remote: str) -> ControlClient:
    """A bare Spark Connect client for control calls (interrupt, release) that give up quickly."""
    from pyspark.sql.connect.client import SparkConnectClient
    from pyspark.sql.connect.client.core import RpcDeadlines

    # A hung server must not hang a cancel: its RPCs default to 10 minutes and 15 retries.
    deadlines = RpcDeadlines(interrupt=CONTROL_DEADLINE_S, release_session=CONTROL_DEADLINE_S)
    client: ControlClient = SparkConnectClient(
        remote, retry_policy={"max_retries": 2, "max_backoff": 500}, rpc_deadlines=deadlines
    )
    return client


class JvmLauncher:
    """The `Launcher` of real Spark Connect servers: `spark-submit` from the pyspark wheel, one JVM each."""

    def __init__(self, data_dir: Path, *, driver_memory: str, extra_confs: Mapping[str, str]) -> None:
        self.data_dir = data_dir
        self.driver_memory = driver_memory
        self.extra_confs = dict(extra_confs)

    def control_client(self, remote: str) -> ControlClient:
        return control_client(remote)

    def _cluster_dir(self, server: Server) -> Path:
        private_folder(self.data_dir / "clusters")  # server logs carry run errors
        return private_folder(self.data_dir / "clusters" / server.cluster_id)

    def _metastore_dir(self, server: Server) -> Path:
        if server.cluster_id == DEFAULT_CLUSTER_ID:
            return self.data_dir / "metastore"
        return self._cluster_dir(server) / "metastore"

    @staticmethod
    def warehouse(server: Server) -> str:
        # A dedicated server's private metastore gets a private warehouse too: in the shared one,
        # its `saveAsTable("db.t")` would find (or overwrite) the files of the shared `db.t`.
        if server.cluster_id == DEFAULT_CLUSTER_ID:
            return "viewfs://dbfs/user/hive/warehouse"
        return f"viewfs://dbfs/local_clusters/{server.cluster_id}/warehouse"

    def server_confs(self, server: Server) -> dict[str, str]:
        java_options = " ".join(
            [
                # Fast start: C1 only and the serial GC; a local driver never runs long enough to win
                # back C2's compile time, and one heap needs no parallel collector.
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                f"-Dderby.system.home={self._metastore_dir(server)}",
                f"{_MARK_DATA_DIR}{self.data_dir}",
                f"{_MARK_OWNER}{os.getpid()}",
            ]
        )
        confs = {
            "spark.master": f"local[{server.cores}]",
            "spark.app.name": f"aml-databricks {server.cluster_id}",
            "spark.driver.memory": self.driver_memory,
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(server.port),
            "spark.hadoop.fs.defaultFS": "viewfs://dbfs/",
            "spark.hadoop.fs.viewfs.mounttable.dbfs.linkFallback": dbfs_root(self.data_dir).as_uri(),
            # ViewFS instances are cached per scheme+authority: without this, the first session's
            # mount table would serve every later session and per-session mounts would leak.
            "spark.hadoop.fs.viewfs.impl.disable.cache": "true",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": self.warehouse(server),
        }
        confs.update(self.extra_confs)
        confs.update({k: v for k, v in server.static.items() if k != "spark.driver.extraJavaOptions"})
        extra_java = server.static.get("spark.driver.extraJavaOptions", "")
        confs["spark.driver.extraJavaOptions"] = f"{java_options} {extra_java}".strip()
        return confs

    def start(self, server: Server) -> None:
        home = pyspark_home()
        server.port = _free_port()
        command = [str(home / "bin" / "spark-submit"), "--class", CONNECT_SERVER_CLASS]
        env = dict(os.environ)
        confs = {**delta_server_setup(self.data_dir, env), **self.server_confs(server)}  # hook: Delta tables
        for key, value in confs.items():
            command += ["--conf", f"{key}={value}"]
        command.append("spark-internal")
        env.update(
            SPARK_HOME=str(home),
            # Python UDF workers are forked by the server: give them this interpreter, whose
            # environment has pyarrow and pandas, not whatever `python3` PATH finds; through a
            # script whose worker daemons fork from a warm parent (started once the server is ready).
            PYSPARK_PYTHON=self._server_python(server),
            SPARK_LOCAL_IP="127.0.0.1",
        )
        server.pyworkers_socket = f"aml-databricks-pyworkers-{uuid.uuid4().hex}"
        env[pyworkers.SOCKET_ENV] = server.pyworkers_socket
        # Client-side switches (set by pyspark's `builder.remote()` in this process) must not reach
        # the server's Python workers.
        for name in ("PYSPARK_DRIVER_PYTHON", "SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE"):
            env.pop(name, None)
        log_path = self._cluster_dir(server) / "server.log"
        with open_private(log_path, "ab") as log_file:  # run errors and their values end up here
            log_file.write(f"--- starting {server.cluster_id} on port {server.port}\n".encode())
            log_file.flush()
            # A session of its own: Ctrl-C in the workspace's terminal must not kill the JVM before
            # the pool had a chance to interrupt the runs on it. Armed to die with the workspace: a
            # JVM is ~0.5 GB, and a kill -9 of the workspace must not leave it running.
            server.process = lifeline.popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        log.info("starting cluster %s: pid %s, port %s", server.cluster_id, server.pid, server.port)

    def wait_ready(self, server: Server, closed: threading.Event) -> None:
        """Ready means the port accepts and a trivial query runs (that also warms the JVM up)."""
        assert server.process is not None
        log_path = self._cluster_dir(server) / "server.log"
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        while not _port_open(server.port):
            if closed.is_set():
                raise ClusterStartError("the cluster pool was closed while the server started")
            if server.process.poll() is not None:
                raise ClusterStartError(
                    f"Spark Connect server {server.cluster_id} exited with code {server.process.returncode}; "
                    f"{log_path} ends with:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"Spark Connect server {server.cluster_id} not up after {START_TIMEOUT_S:.0f} s; "
                    f"{log_path} ends with:\n{_tail(log_path)}"
                )
            time.sleep(0.1)
        server.startup_s["port_open"] = time.monotonic() - started
        from pyspark.sql.connect.session import SparkSession

        spark = SparkSession(connection=server.remote(str(uuid.uuid4())))
        try:
            mark = time.monotonic()
            spark.sql("SELECT 1").collect()
            server.startup_s["first_query"] = time.monotonic() - mark
        finally:
            spark.stop()
        self._start_pyworkers(server)
        log.info(
            "cluster %s ready: %s",
            server.cluster_id,
            ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in server.startup_s.items()),
        )

    def session_released(self, server: Server, server_session_id: str) -> None:
        if server.pyworkers_socket:
            pyworkers.release(server.pyworkers_socket, server_session_id)

    def _server_python(self, server: Server) -> str:
        script = pyworkers.interpreter_script()
        if script is None:
            return sys.executable
        path = self._cluster_dir(server) / "python"
        draft = path.with_name("python.new")  # replaced whole: a server still running may start it
        with open_private(draft, "wb") as file:
            file.write(script.encode())
        draft.chmod(0o700)
        os.replace(draft, path)
        return str(path)

    def _start_pyworkers(self, server: Server) -> None:
        """The warm parent of the server's Python worker daemons; started after the server is ready, so
        its imports stay off the cold start. It ends with the JVM. Until it listens, and if it fails,
        the daemons start the usual way."""
        assert server.process is not None
        with open_private(self._cluster_dir(server) / "server.log", "ab") as log_file:
            server.pyworkers = lifeline.popen(
                [sys.executable, "-m", pyworkers.__name__, server.pyworkers_socket, str(server.process.pid)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, pyworkers.SOCKET_ENV: server.pyworkers_socket},
                start_new_session=True,
            )


def _our_jvms(data_dir: Path) -> dict[int, int | None]:
    """pid -> owner pid of the Spark servers started for `data_dir` (Linux /proc; {} elsewhere)."""
    found: dict[int, int | None] = {}
    for pid, args in procs.command_lines(f"{_MARK_DATA_DIR}{data_dir}").items():
        owner = next((a.split(_MARK_OWNER, 1)[1].split()[0] for a in args if _MARK_OWNER in a), None)
        found[pid] = int(owner) if owner and owner.isdigit() else None
    return found


def kill_orphans(data_dir: Path) -> None:
    """Kill servers of a pool on this data dir whose owner process has died: they hold the metastore."""
    for pid, owner in _our_jvms(data_dir).items():
        if owner is not None and procs.alive(owner):
            continue  # a live pool's server (maybe ours): not an orphan
        log.warning("killing Spark server %s left by a stopped workspace", pid)
        procs.send(pid, signal.SIGKILL)


def jvm_pids(data_dir: Path) -> list[int]:
    """Every live Spark server JVM started for this data dir, by any pool (for tests and checks)."""
    return sorted(_our_jvms(Path(data_dir).resolve()))
