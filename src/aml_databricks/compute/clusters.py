"""Local clusters: a small pool of warm Spark Connect servers, one JVM per distinct static config.

Every task run gets its own Spark Connect *session* (`sc://127.0.0.1:<port>/;session_id=<uuid>`)
on a server that is already up, so a warm run pays ~1 s instead of a JVM start. A cluster spec
whose `spark_conf` holds only runtime confs shares the default server (cluster id `local`); the
driver applies those confs to its own session (`session_confs`). Static confs (`static_confs`)
can only be set when a JVM starts, so they get a dedicated server keyed by them.

What each server is given (see `_server_confs`):
- DBFS: Hadoop ViewFS with `<data_dir>/dbfs` as the fallback of the mount table, so Spark's `/x`
  lands in `<data_dir>/dbfs/x`. A mount is one more link, which works as a *session* conf
  (`fs.viewfs.mounttable.dbfs.link./mnt/x=file:///...`, measured): mounts need no server restart.
- Tables: the Hive catalog, its Derby metastore in `<data_dir>/metastore`, the warehouse under
  DBFS. Derby (embedded) lets one JVM open the metastore at a time, so only the default server
  uses it; a dedicated server gets a private metastore in `clusters/<id>/metastore` and a private
  warehouse in `dbfs/local_clusters/<id>/warehouse`.
- Parallelism: `local[*]` on the shared server. `num_workers`/`autoscale` are recorded, and
  honoured as `local[N]` (capped at the CPU count) only on a dedicated server: a JVM (and a
  metastore of its own) per worker count would cost a cold start and hide the shared tables.
  `spark.driver.memory` from a spec is ignored the same way: memory is the pool's setting.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import re
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
from typing import Any

from aml_databricks.delta.server import server_setup as delta_server_setup
from aml_databricks.errors import AmlDatabricksError

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_ID = "local"
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0
CONTROL_DEADLINE_S = 10.0
# A fixed user id in the remote: the driver and the pool's interrupt client must name the same
# (user, session) pair, whatever USER their environments hold.
CONNECT_USER_ID = "aml-databricks"
# Marks our JVMs on their command line, so a pool can find servers left by a crashed predecessor.
_MARK_DATA_DIR = "-Daml_databricks.data_dir="
_MARK_OWNER = "-Daml_databricks.owner="

# Confs Spark reads only when the JVM (or its SparkContext/SharedState) starts. Prefix match.
# Core confs: `spark.conf.set` refuses them at run time, so they force a dedicated server.
STATIC_CONF_PREFIXES = (
    "spark.driver.",
    "spark.executor.",
    "spark.jars",
    "spark.files",
    "spark.archives",
    "spark.submit.",
    "spark.memory.",
    "spark.local.dir",
    "spark.ui.",
    "spark.eventLog.",
    "spark.serializer",
    "spark.kryo",
    "spark.network.",
    "spark.rpc.",
    "spark.shuffle.",
    "spark.scheduler.",
    "spark.default.parallelism",
    "spark.cores.max",
    "spark.task.",
    "spark.dynamicAllocation.",
    "spark.plugins",
    "spark.extraListeners",
    "spark.python.",
    "spark.connect.",
    "spark.sql.hive.metastore",
)
# Spark 4.3's StaticSQLConf keys (read off the class with javap): fixed once per JVM. Exact match:
# `spark.sql.debug` is static, `spark.sql.debug.maxToStringFields` is not.
STATIC_SQL_CONFS = frozenset(
    {
        "spark.sql.artifact.copyFromLocalToFs.allowDestLocal",
        "spark.sql.avro.schemaUrlAllowedSchemes",
        "spark.sql.broadcastExchange.maxThreadThreshold",
        "spark.sql.cache.serializer",
        "spark.sql.catalogImplementation",
        "spark.sql.codegen.cache.maxEntries",
        "spark.sql.codegen.comments",
        "spark.sql.debug",
        "spark.sql.defaultUrlStreamHandlerFactory.enabled",
        "spark.sql.event.truncate.length",
        "spark.sql.extensions",
        "spark.sql.extensions.test.loadFromCp",
        "spark.sql.filesourceTableRelationCacheSize",
        "spark.sql.globalTempDatabase",
        "spark.sql.hive.thriftServer.http.sniHostCheckEnabled",
        "spark.sql.hive.thriftServer.singleSession",
        "spark.sql.kafka.disallowedOptions",
        "spark.sql.legacy.hive.thriftServer.allowSettingSystemProperties",
        "spark.sql.legacy.sessionInitWithConfigDefaults",
        "spark.sql.metadataCacheTTLSeconds",
        "spark.sql.queryExecutionListeners",
        "spark.sql.reflect.allowList",
        "spark.sql.restrictedMode.enabled",
        "spark.sql.resultQueryStage.maxThreadThreshold",
        "spark.sql.shuffleExchange.maxThreadThreshold",
        "spark.sql.sources.disabledJdbcConnProviderList",
        "spark.sql.sources.schemaStringLengthThreshold",
        "spark.sql.streaming.streamingQueryListeners",
        "spark.sql.streaming.ui.enabled",
        "spark.sql.streaming.ui.enabledCustomMetricList",
        "spark.sql.streaming.ui.retainedProgressUpdates",
        "spark.sql.streaming.ui.retainedQueries",
        "spark.sql.subquery.maxThreadThreshold",
        "spark.sql.ui.retainedExecutions",
        "spark.sql.warehouse.dir",
    }
)
# Machine resources and topology: recorded in the cluster description, not emulated.
IGNORED_CONFS = ("spark.master", "spark.driver.memory")
HADOOP_PREFIX = "spark.hadoop."

_SPARK_VERSION = re.compile(r"^(\d+\.\d+\.x|\d+\.\d+(\.\d+)?|apache-spark-\d+\.\d+\.x)(-[A-Za-z0-9][A-Za-z0-9._]*)*$")
_NODE_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{1,63}$")
_MEMORY = re.compile(r"^\d+[kmgtKMGT]?$")


class ClusterStartError(AmlDatabricksError):
    """A Spark Connect server did not come up; the message ends with its log's last lines."""


# --- cluster specs -------------------------------------------------------------------------------


def validate_cluster_spec(spec: Mapping[str, Any]) -> None:
    """Check a `new_cluster` spec for shape; raise ValueError with a one-line message."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"new_cluster must be an object, got {type(spec).__name__}")
    version = spec.get("spark_version")
    if version is not None and not (isinstance(version, str) and _SPARK_VERSION.match(version)):
        raise ValueError(
            f"new_cluster.spark_version {version!r} is not a Databricks runtime version like '13.3.x-scala2.12'"
        )
    for key in ("node_type_id", "driver_node_type_id"):
        node = spec.get(key)
        if node is not None and not (isinstance(node, str) and _NODE_TYPE.match(node)):
            raise ValueError(f"new_cluster.{key} {node!r} is not a node type like 'Standard_DS3_v2'")
    if spec.get("num_workers") is not None:
        _count(spec["num_workers"], "new_cluster.num_workers")
    autoscale = spec.get("autoscale")
    if autoscale is not None:
        if not isinstance(autoscale, Mapping):
            raise ValueError("new_cluster.autoscale must be an object with min_workers and max_workers")
        low = _count(autoscale.get("min_workers", 0), "new_cluster.autoscale.min_workers")
        high = _count(autoscale.get("max_workers"), "new_cluster.autoscale.max_workers")
        if high < max(low, 1):
            raise ValueError(f"new_cluster.autoscale.max_workers ({high}) must be >= max(1, min_workers)")
    for key in ("spark_conf", "spark_env_vars", "custom_tags"):
        value = spec.get(key)
        if value is not None and not (isinstance(value, Mapping) and all(isinstance(k, str) and k for k in value)):
            raise ValueError(f"new_cluster.{key} must be an object with string keys")
    for key, value in (spec.get("spark_conf") or {}).items():
        if isinstance(value, (dict, list)):
            raise ValueError(f"new_cluster.spark_conf[{key!r}] must be a string, number or boolean")


def _count(value: Any, what: str) -> int:
    """A worker count; Airflow sends numbers as strings, so digits are accepted too."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"{what} must be a whole number >= 0, got {value!r}")
    return int(value)


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_static(key: str) -> bool:
    return key in STATIC_SQL_CONFS or key.startswith(STATIC_CONF_PREFIXES)


def static_confs(cluster: Mapping[str, Any]) -> dict[str, str]:
    """The spec's confs that need a JVM of their own (they force a dedicated server)."""
    confs = cluster.get("spark_conf") or {}
    return {k: _conf_value(v) for k, v in sorted(confs.items()) if k not in IGNORED_CONFS and _is_static(k)}


def session_confs(cluster: Mapping[str, Any]) -> dict[str, str]:
    """The spec's runtime confs, ready for `spark.conf.set` in the run's own session.

    `spark.hadoop.X` becomes `X`: a session conf is copied into the Hadoop configuration of that
    session's file system calls as is, so the prefix would hide it.
    """
    confs = cluster.get("spark_conf") or {}
    result: dict[str, str] = {}
    for key, value in sorted(confs.items()):
        if key in IGNORED_CONFS or _is_static(key):
            continue
        name = key.removeprefix(HADOOP_PREFIX) if key.startswith(HADOOP_PREFIX) else key
        result[name] = _conf_value(value)
    return result


def local_cores(cluster: Mapping[str, Any]) -> int:
    """`num_workers` / `autoscale.max_workers` as local cores: 0 (single node) means all of them."""
    cpus = os.cpu_count() or 1
    autoscale = cluster.get("autoscale")
    if isinstance(autoscale, Mapping) and autoscale.get("max_workers") is not None:
        workers = int(autoscale["max_workers"])
    elif cluster.get("num_workers") is not None:
        workers = int(cluster["num_workers"])
    else:
        workers = 0
    return cpus if workers <= 0 else min(workers, cpus)


def cluster_id_for(cluster: Mapping[str, Any]) -> str:
    """`local` for specs the shared server can run, else a stable id derived from the static confs."""
    existing = cluster.get("existing_cluster_id") or cluster.get("cluster_id")
    if existing:
        return str(existing)
    static = static_confs(cluster)
    if not static:
        return DEFAULT_CLUSTER_ID
    key = json.dumps({"static": static, "cores": local_cores(cluster)}, sort_keys=True)
    return "local-" + hashlib.sha256(key.encode()).hexdigest()[:10]


# --- servers -------------------------------------------------------------------------------------


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


@dataclass
class _Server:
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

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def remote(self, session_id: str) -> str:
        return f"sc://127.0.0.1:{self.port}/;session_id={session_id};user_id={CONNECT_USER_ID}"


def _control_client(remote: str) -> Any:
    """A bare Spark Connect client for control calls (interrupt, release) that give up quickly."""
    from pyspark.sql.connect.client import SparkConnectClient
    from pyspark.sql.connect.client.core import RpcDeadlines

    # A hung server must not hang a cancel: its RPCs default to 10 minutes and 15 retries.
    deadlines = RpcDeadlines(interrupt=CONTROL_DEADLINE_S, release_session=CONTROL_DEADLINE_S)
    return SparkConnectClient(remote, retry_policy={"max_retries": 2, "max_backoff": 500}, rpc_deadlines=deadlines)


def _control_call(remote: str, method: str) -> None:
    """Call `method` of a control client on the session of `remote`; log failures, never raise."""
    try:
        client = _control_client(remote)
        try:
            getattr(client, method)()
        finally:
            client.close()
    except Exception as error:  # the server may be gone, or the session never created
        log.info("%s on %s: %s", method, remote.split(";", 1)[0], error)


class Lease:
    """One task run's hold on a server: its own session id, interruptible, released once."""

    def __init__(self, pool: ClusterPool, server: _Server, run_id: int, session_id: str | None = None) -> None:
        self._pool = pool
        self._server = server
        self.run_id = run_id
        self.cluster_id = server.cluster_id
        self.session_id = session_id or str(uuid.uuid4())
        self.remote = server.remote(self.session_id)
        self._released = False
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        """Interrupt every Spark job of this session; best effort, bounded, never raises."""
        _control_call(self.remote, "interrupt_all")

    def release(self) -> None:
        """Free the server-side session (a crashed driver leaves it behind) and return the server."""
        with self._lock:
            if self._released:
                return
            self._released = True
        _control_call(self.remote, "release_session")
        self._pool._return(self._server)


class ClusterPool:
    """A `SparkProvider`: warm Spark Connect servers, started on demand, stopped when idle.

    `acquire` blocks until a fit server is up. At most `max_servers` run at once; a new kind of
    server first evicts an idle one, else waits for one to become idle.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        idle_timeout_s: float = 600,
        driver_memory: str = "1g",
        max_servers: int = 2,
        extra_confs: Mapping[str, str] | None = None,
        install_samples: bool = True,
    ) -> None:
        if not _MEMORY.match(driver_memory):
            raise ValueError(f"driver_memory {driver_memory!r} is not a JVM size like '1g' or '512m'")
        if max_servers < 1:
            raise ValueError("max_servers must be at least 1")
        self.data_dir = Path(data_dir).resolve()
        self.idle_timeout_s = idle_timeout_s
        self.driver_memory = driver_memory
        self.max_servers = max_servers
        self.extra_confs = dict(extra_confs or {})
        self.install_samples = install_samples
        for sub in ("dbfs", "metastore", "clusters"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self._servers: dict[str, _Server] = {}
        self._known: dict[str, dict[str, Any]] = {}  # dedicated cluster id -> spec, kept after it stops
        self._cond = threading.Condition()
        self._closed = threading.Event()
        _kill_orphans(self.data_dir)
        self._reaper = threading.Thread(target=self._reap_idle, name="cluster-reaper", daemon=True)
        self._reaper.start()
        atexit.register(self.close)

    # -- SparkProvider --------------------------------------------------------------------------

    def acquire(self, cluster: Mapping[str, Any], run_id: int, session_id: str | None = None) -> Lease:
        cluster = dict(cluster or {})
        existing = cluster.get("existing_cluster_id") or cluster.get("cluster_id")
        if existing and existing != DEFAULT_CLUSTER_ID:
            with self._cond:
                known = self._known.get(str(existing))
            if known is None:
                raise ValueError(f"cluster {existing!r} does not exist (the local default is 'local')")
            cluster = known  # a stopped dedicated cluster starts again, as Databricks restarts it
        validate_cluster_spec(cluster)
        cluster_id = cluster_id_for({k: v for k, v in cluster.items() if k != "existing_cluster_id"})
        server, must_start = self._claim(cluster_id, cluster)
        if must_start:
            self._start(server)
        server.ready.wait()
        if server.error is not None:
            raise ClusterStartError(str(server.error)) from server.error
        return Lease(self, server, run_id, session_id)

    def close(self) -> None:
        """Stop every server (terminate, then kill) and the reaper. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        atexit.unregister(self.close)
        with self._cond:
            self._cond.notify_all()
        self.stop_servers()
        self._reaper.join(timeout=5)

    # -- management -------------------------------------------------------------------------------

    def stop_servers(self) -> None:
        """Stop every running server; the pool stays usable and starts them again on demand."""
        with self._cond:
            servers = list(self._servers.values())
            self._servers.clear()
            self._cond.notify_all()
        for server in servers:
            self._stop(server)

    def stop(self, cluster_id: str) -> bool:
        """Terminate one cluster's server (Clusters API `delete`); False if it was not running.

        Runs still holding a lease on it lose their Spark session, as on Databricks.
        """
        with self._cond:
            server = self._servers.pop(cluster_id, None)
            self._cond.notify_all()
        if server is None:
            return False
        self._stop(server)
        return True

    def server_pids(self) -> list[int]:
        with self._cond:
            return [s.pid for s in self._servers.values() if s.pid is not None]

    def describe(self) -> list[dict[str, Any]]:
        """The Clusters API view: the permanent default cluster first, then dedicated servers."""
        with self._cond:
            servers = dict(self._servers)
            known = dict(self._known)
        rows = [self._describe(DEFAULT_CLUSTER_ID, servers.get(DEFAULT_CLUSTER_ID), {})]
        rows += [self._describe(cid, servers.get(cid), spec) for cid, spec in sorted(known.items())]
        return rows

    def _describe(self, cluster_id: str, server: _Server | None, spec: dict[str, Any]) -> dict[str, Any]:
        import pyspark

        major_minor = ".".join(pyspark.__version__.split(".")[:2])
        state = server.state if server else "TERMINATED"
        row: dict[str, Any] = {
            "cluster_id": cluster_id,
            "cluster_name": "Local shared cluster" if cluster_id == DEFAULT_CLUSTER_ID else cluster_id,
            "state": state,
            "state_message": "" if state != "TERMINATED" else "Starts on the next run that uses it",
            "spark_version": spec.get("spark_version", f"{major_minor}.x-scala2.13"),
            "node_type_id": spec.get("node_type_id", "local"),
            "driver_node_type_id": spec.get("driver_node_type_id", spec.get("node_type_id", "local")),
            "num_workers": int(spec.get("num_workers") or 0),
            "spark_conf": dict(spec.get("spark_conf") or {}),
            "spark_env_vars": dict(spec.get("spark_env_vars") or {}),
            "cluster_source": "UI" if cluster_id == DEFAULT_CLUSTER_ID else "JOB",
            "driver_memory": self.driver_memory,
            "local_cores": server.cores if server else (os.cpu_count() or 1),
        }
        if spec.get("autoscale"):
            row["autoscale"] = dict(spec["autoscale"])
        if server and server.start_time_ms:
            row["start_time"] = server.start_time_ms
            row["local_startup_s"] = {k: round(v, 3) for k, v in server.startup_s.items()}
            row["local_pid"] = server.pid
        return row

    # -- internals --------------------------------------------------------------------------------

    def _claim(self, cluster_id: str, cluster: dict[str, Any]) -> tuple[_Server, bool]:
        """Count a lease on the server for `cluster_id`; create it (to be started) if needed."""
        while True:
            victim: _Server | None = None
            with self._cond:
                if self._closed.is_set():
                    raise ClusterStartError("the cluster pool is closed")
                server = self._servers.get(cluster_id)
                if server is not None and server.ready.is_set() and server.exited():
                    log.warning("cluster %s died: starting it again", cluster_id)
                    del self._servers[cluster_id]
                    server = None
                if server is not None:
                    server.leases += 1
                    return server, False
                if len(self._servers) < self.max_servers:
                    dedicated = cluster_id != DEFAULT_CLUSTER_ID
                    server = _Server(
                        cluster_id=cluster_id,
                        spec=cluster if dedicated else {},
                        static=static_confs(cluster),
                        cores=local_cores(cluster) if dedicated else (os.cpu_count() or 1),
                        leases=1,
                    )
                    self._servers[cluster_id] = server
                    if dedicated:
                        self._known[cluster_id] = cluster
                    return server, True
                idle = [s for s in self._servers.values() if s.leases == 0 and s.ready.is_set()]
                if idle:
                    victim = min(idle, key=lambda s: s.last_used)
                    del self._servers[victim.cluster_id]
                else:
                    self._cond.wait(timeout=1.0)
            if victim is not None:
                log.info("stopping idle cluster %s to make room for %s", victim.cluster_id, cluster_id)
                self._stop(victim)

    def _return(self, server: _Server) -> None:
        with self._cond:
            server.leases = max(0, server.leases - 1)
            server.last_used = time.monotonic()
            self._cond.notify_all()

    def _start(self, server: _Server) -> None:
        try:
            self._launch(server)
            self._wait_ready(server)
            server.state = "RUNNING"
            server.start_time_ms = int(time.time() * 1000)
        except BaseException as error:
            server.error = error
            server.state = "ERROR"
            with self._cond:
                if self._servers.get(server.cluster_id) is server:
                    del self._servers[server.cluster_id]
                self._cond.notify_all()
            self._terminate(server)
        finally:
            server.ready.set()

    def _cluster_dir(self, server: _Server) -> Path:
        path = self.data_dir / "clusters" / server.cluster_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _metastore_dir(self, server: _Server) -> Path:
        if server.cluster_id == DEFAULT_CLUSTER_ID:
            return self.data_dir / "metastore"
        return self._cluster_dir(server) / "metastore"

    @staticmethod
    def _warehouse(server: _Server) -> str:
        # A dedicated server's private metastore gets a private warehouse too: in the shared one,
        # its `saveAsTable("db.t")` would find (or overwrite) the files of the shared `db.t`.
        if server.cluster_id == DEFAULT_CLUSTER_ID:
            return "viewfs://dbfs/user/hive/warehouse"
        return f"viewfs://dbfs/local_clusters/{server.cluster_id}/warehouse"

    def _server_confs(self, server: _Server) -> dict[str, str]:
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
            "spark.hadoop.fs.viewfs.mounttable.dbfs.linkFallback": (self.data_dir / "dbfs").as_uri(),
            # ViewFS instances are cached per scheme+authority: without this, the first session's
            # mount table would serve every later session and per-session mounts would leak.
            "spark.hadoop.fs.viewfs.impl.disable.cache": "true",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": self._warehouse(server),
        }
        confs.update(self.extra_confs)
        confs.update({k: v for k, v in server.static.items() if k != "spark.driver.extraJavaOptions"})
        extra_java = server.static.get("spark.driver.extraJavaOptions", "")
        confs["spark.driver.extraJavaOptions"] = f"{java_options} {extra_java}".strip()
        return confs

    def _launch(self, server: _Server) -> None:
        home = pyspark_home()
        server.port = _free_port()
        command = [str(home / "bin" / "spark-submit"), "--class", CONNECT_SERVER_CLASS]
        env = dict(os.environ)
        confs = {**delta_server_setup(self.data_dir, env), **self._server_confs(server)}  # hook: Delta tables
        for key, value in confs.items():
            command += ["--conf", f"{key}={value}"]
        command.append("spark-internal")
        env.update(
            SPARK_HOME=str(home),
            # Python UDF workers are forked by the server: give them this interpreter, whose
            # environment has pyarrow and pandas, not whatever `python3` PATH finds.
            PYSPARK_PYTHON=sys.executable,
            SPARK_LOCAL_IP="127.0.0.1",
        )
        # Client-side switches (set by pyspark's `builder.remote()` in this process) must not reach
        # the server's Python workers.
        for name in ("PYSPARK_DRIVER_PYTHON", "SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE"):
            env.pop(name, None)
        log_path = self._cluster_dir(server) / "server.log"
        with log_path.open("ab") as log_file:
            log_file.write(f"--- starting {server.cluster_id} on port {server.port}\n".encode())
            log_file.flush()
            # A session of its own: Ctrl-C in the workspace's terminal must not kill the JVM before
            # the pool had a chance to interrupt the runs on it.
            server.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        log.info("starting cluster %s: pid %s, port %s", server.cluster_id, server.pid, server.port)

    def _wait_ready(self, server: _Server) -> None:
        """Ready means the port accepts and a trivial query runs (that also warms the JVM up)."""
        assert server.process is not None
        log_path = self._cluster_dir(server) / "server.log"
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        while not _port_open(server.port):
            if self._closed.is_set():
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
            if self.install_samples and server.cluster_id == DEFAULT_CLUSTER_ID:
                mark = time.monotonic()
                self._install_samples_once(spark)
                server.startup_s["samples"] = time.monotonic() - mark
        finally:
            spark.stop()
        log.info(
            "cluster %s ready: %s",
            server.cluster_id,
            ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in server.startup_s.items()),
        )

    def _install_samples_once(self, spark: Any) -> None:
        """Sample tables on the first start of a data dir; the marker spares later starts the check."""
        marker = self.data_dir / "metastore" / "samples-installed"
        if marker.exists():
            return
        from aml_databricks.compute.tables import install_samples

        try:
            install_samples(spark)
        except Exception as error:  # no scikit-learn, say: the cluster is still fine without samples
            log.warning("sample tables not installed: %s: %s", type(error).__name__, error)
            return
        marker.touch()

    def _stop(self, server: _Server) -> None:
        server.state = "TERMINATING"
        self._terminate(server)
        server.state = "TERMINATED"

    @staticmethod
    def _terminate(server: _Server) -> None:
        process = server.process
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the JVM's shutdown hook stops the SparkContext and releases Derby
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_GRACE_S)
        log.info("stopped cluster %s (pid %s)", server.cluster_id, process.pid)

    def _reap_idle(self) -> None:
        interval = max(0.2, min(self.idle_timeout_s / 4, 10.0))
        while not self._closed.wait(interval):
            now = time.monotonic()
            with self._cond:
                idle = [
                    s
                    for s in self._servers.values()
                    if s.leases == 0 and s.ready.is_set() and now - s.last_used >= self.idle_timeout_s
                ]
                for server in idle:
                    del self._servers[server.cluster_id]
            for server in idle:
                log.info("cluster %s idle for %.0f s: stopping it", server.cluster_id, self.idle_timeout_s)
                self._stop(server)


def _our_jvms(data_dir: Path) -> dict[int, int | None]:
    """pid -> owner pid of the Spark servers started for `data_dir` (Linux /proc; {} elsewhere)."""
    found: dict[int, int | None] = {}
    marker = f"{_MARK_DATA_DIR}{data_dir}"
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not any(marker in arg for arg in args):
            continue
        owner = next((a.split(_MARK_OWNER, 1)[1].split()[0] for a in args if _MARK_OWNER in a), None)
        found[int(entry.name)] = int(owner) if owner and owner.isdigit() else None
    return found


def _kill_orphans(data_dir: Path) -> None:
    """Kill servers of a pool on this data dir whose owner process has died: they hold the metastore."""
    for pid, owner in _our_jvms(data_dir).items():
        if owner is not None and Path(f"/proc/{owner}").exists():
            continue  # a live pool's server (maybe ours): not an orphan
        log.warning("killing Spark server %s left by a stopped workspace", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def jvm_pids(data_dir: Path) -> list[int]:
    """Every live Spark server JVM started for this data dir, by any pool (for tests and checks)."""
    return sorted(_our_jvms(Path(data_dir).resolve()))
