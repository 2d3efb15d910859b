"""The cluster pool: a few warm Spark Connect servers, one per distinct static config, and the leases on them.

Every task run gets its own Spark Connect *session* (`sc://127.0.0.1:<port>/;session_id=<uuid>`)
on a server that is already up, so a warm run pays ~1 s instead of a JVM start. Which spec gets
which server is cluster_specs.py's; how a server starts and is watched is jvm.py's (through the
`Launcher` seam); this module only counts: leases, idle reaping, eviction when full, restarts.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aml_databricks.compute.host import procs
from aml_databricks.compute.host.cluster_specs import (
    DEFAULT_CLUSTER_ID,
    MEMORY_SIZE,
    cluster_id_for,
    local_cores,
    static_confs,
    validate_cluster_spec,
)
from aml_databricks.compute.host.jvm import (
    ClusterStartError,
    JvmLauncher,
    Launcher,
    Server,
    jvm_pids,
    kill_orphans,
)
from aml_databricks.compute.host.samples import SampleInstaller, pending_marker

__all__ = ["ClusterPool", "ClusterStartError", "ClusterStatus", "Lease", "jvm_pids"]

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
SAMPLES_WAIT_S = 120.0  # an outside client waits at most this long for the background install of `samples.*`


@dataclass(frozen=True)
class ClusterStatus:
    """One cluster as the pool sees it, for the Clusters API (workspace/clusters.py renders it)."""

    cluster_id: str
    state: str  # PENDING | RUNNING | TERMINATING | TERMINATED | ERROR
    spec: dict[str, Any]  # the dedicated cluster's spec; {} for the default one
    local_cores: int
    start_time_ms: int = 0
    startup_s: dict[str, float] = field(default_factory=dict)
    pid: int | None = None
    port: int = 0  # the server's own Spark Connect port, while it runs


class Lease:
    """One task run's hold on a server: its own session id, interruptible, released once."""

    def __init__(self, pool: ClusterPool, server: Server, run_id: int, session_id: str | None = None) -> None:
        self._pool = pool
        self._server = server
        self.run_id = run_id
        self.cluster_id = server.cluster_id
        self.session_id = session_id or str(uuid.uuid4())
        self.remote = server.remote(self.session_id)
        # the marker a run's driver waits on when it queries `samples.*` before they are installed
        installing = pool.samples is not None and server.cluster_id == DEFAULT_CLUSTER_ID
        self.samples_pending = str(pending_marker(pool.data_dir)) if installing else None
        self._released = False
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        """Interrupt every Spark job of this session; best effort, bounded, never raises."""
        _control_call(self._pool.launcher, self.remote, "interrupt_all")

    def release(self) -> None:
        """Free the server-side session (a crashed driver leaves it behind) and return the server."""
        with self._lock:
            if self._released:
                return
            self._released = True
        released = _control_call(self._pool.launcher, self.remote, "release_session")
        if released:
            self._pool.launcher.session_released(self._server, released)
        self._pool._return(self._server)


def _control_call(launcher: Launcher, remote: str, method: str) -> str | None:
    """Call `method` of a control client on the session of `remote`; log failures, never raise.
    Returns the server's own id of the session, when its answer carried one."""
    try:
        client = launcher.control_client(remote)
        try:
            getattr(client, method)()
            server_session_id = getattr(client, "_server_session_id", None)
            return server_session_id if isinstance(server_session_id, str) and server_session_id else None
        finally:
            client.close()
    except Exception as error:  # the server may be gone, or the session never created
        log.info("%s on %s: %s", method, remote.split(";", 1)[0], error)
        return None


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
        launcher: Launcher | None = None,
    ) -> None:
        """`launcher`: how servers start (real JVMs by default; tests pass processes that are not)."""
        if not MEMORY_SIZE.match(driver_memory):
            raise ValueError(f"driver_memory {driver_memory!r} is not a JVM size like '1g' or '512m'")
        if max_servers < 1:
            raise ValueError("max_servers must be at least 1")
        self.data_dir = Path(data_dir).resolve()
        self.idle_timeout_s = idle_timeout_s
        self.driver_memory = driver_memory
        self.max_servers = max_servers
        self.launcher: Launcher = launcher or JvmLauncher(
            self.data_dir, driver_memory=driver_memory, extra_confs=extra_confs or {}
        )
        for sub in ("dbfs", "metastore", "clusters"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        # Sample tables on real servers only, installed once the shared server is idle (samples.py).
        self.samples = SampleInstaller(self.data_dir) if install_samples and launcher is None else None
        self._servers: dict[str, Server] = {}
        self._known: dict[str, dict[str, Any]] = {}  # dedicated cluster id -> spec, kept after it stops
        self._cond = threading.Condition()
        self._closed = threading.Event()
        kill_orphans(self.data_dir)
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

    def outside_server(self, cluster_id: str = DEFAULT_CLUSTER_ID) -> Server:
        """The running server of a cluster, for a client from outside the workspace (databricks-connect).

        Starts it if it is stopped, as connecting to a terminated cluster starts it on Databricks. The
        client holds no lease: its traffic keeps the server from being reaped (`touch`), the way
        Databricks' auto-termination counts activity, not open sessions. Raises ValueError for an
        unknown cluster, ClusterStartError if it does not come up.
        """
        spec: dict[str, Any] = {}
        if cluster_id != DEFAULT_CLUSTER_ID:
            with self._cond:
                known = self._known.get(cluster_id)
            if known is None:
                raise ValueError(f"cluster {cluster_id!r} does not exist (the local default is 'local')")
            spec = known
        server, must_start = self._claim(cluster_id, spec)
        try:
            if must_start:
                self._start(server)
            server.ready.wait()
            if server.error is not None:
                raise ClusterStartError(str(server.error)) from server.error
            if cluster_id == DEFAULT_CLUSTER_ID and self.samples is not None and not self.samples.installed:
                # An outside client can't wait for the sample tables the way a run's driver does
                # (compute/driver/samples_wait.py): they are installed now, before its first query.
                self.samples.want()
                self.samples.wait(SAMPLES_WAIT_S)
        finally:
            self._return(server)
        return server

    @staticmethod
    def touch(server: Server) -> None:
        """Count traffic of an outside client as use of `server`: the reaper leaves it running."""
        server.last_used = time.monotonic()

    def start_in_background(self, cluster_id: str) -> None:
        """Clusters API `start`: start a stopped cluster without waiting for it; nothing happens to one
        that is pending or running. The cluster is PENDING when this returns. ValueError for an unknown
        cluster."""
        with self._cond:
            spec = {} if cluster_id == DEFAULT_CLUSTER_ID else self._known.get(cluster_id)
            if spec is None:
                raise ValueError(f"cluster {cluster_id!r} does not exist (the local default is 'local')")
            if cluster_id in self._servers:
                return
        server, must_start = self._claim(cluster_id, spec)

        def start() -> None:
            try:
                if must_start:
                    self._start(server)
                if server.error is not None:  # shown as ERROR by clusters/get; the next use tries again
                    log.warning("cluster %s did not start: %s", cluster_id, server.error)
            finally:
                self._return(server)

        threading.Thread(target=start, name=f"start-{cluster_id}", daemon=True).start()

    def known_clusters(self) -> list[str]:
        """The dedicated clusters' ids, running or not."""
        with self._cond:
            return sorted(self._known)

    def server_pids(self) -> list[int]:
        with self._cond:
            return [s.pid for s in self._servers.values() if s.pid is not None]

    def snapshot(self) -> list[ClusterStatus]:
        """Every cluster the pool knows: the permanent default cluster first, then dedicated ones
        (kept after they stop, as Databricks keeps a terminated job cluster)."""
        with self._cond:
            servers = dict(self._servers)
            known = dict(self._known)
        statuses = [self._status(DEFAULT_CLUSTER_ID, servers.get(DEFAULT_CLUSTER_ID), {})]
        statuses += [self._status(cid, servers.get(cid), spec) for cid, spec in sorted(known.items())]
        return statuses

    @staticmethod
    def _status(cluster_id: str, server: Server | None, spec: dict[str, Any]) -> ClusterStatus:
        if server is None:
            return ClusterStatus(cluster_id, "TERMINATED", spec, os.cpu_count() or 1)
        return ClusterStatus(cluster_id, server.state, spec, server.cores, server.start_time_ms,
                             dict(server.startup_s), server.pid, server.port)

    # -- internals --------------------------------------------------------------------------------

    def _claim(self, cluster_id: str, cluster: dict[str, Any]) -> tuple[Server, bool]:
        """Count a lease on the server for `cluster_id`; create it (to be started) if needed."""
        while True:
            victim: Server | None = None
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
                    server = Server(
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

    def _idle(self, server: Server) -> bool:
        with self._cond:
            return server.leases == 0

    def _return(self, server: Server) -> None:
        with self._cond:
            server.leases = max(0, server.leases - 1)
            server.last_used = time.monotonic()
            self._cond.notify_all()

    def _start(self, server: Server) -> None:
        try:
            self.launcher.start(server)
            self.launcher.wait_ready(server, self._closed)
            server.state = "RUNNING"
            server.start_time_ms = int(time.time() * 1000)
            if self.samples is not None and server.cluster_id == DEFAULT_CLUSTER_ID:
                self.samples.schedule(server.remote, lambda: self._idle(server), self._closed)
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

    def _stop(self, server: Server) -> None:
        server.state = "TERMINATING"
        if self.samples is not None and server.cluster_id == DEFAULT_CLUSTER_ID:
            self.samples.abort()  # its client would retry the stopped server for minutes
        self._terminate(server)
        server.state = "TERMINATED"

    @staticmethod
    def _terminate(server: Server) -> None:
        process = server.process
        if process is None or process.poll() is not None:
            return
        procs.stop(process, STOP_GRACE_S)  # SIGTERM first: the JVM's shutdown hook releases Derby
        if server.pyworkers is not None:  # it ends with the JVM; this makes it before the stop returns
            procs.stop(server.pyworkers, STOP_GRACE_S)
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
