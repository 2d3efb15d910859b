"""`DriverExecutor`: each task run is a driver subprocess (`compute/driver/`) in its own process group.

Start-up happens on a background thread — libraries, then Spark, then the subprocess — so `start`
returns at once and `cancel` works in every phase: while a library installs or a Spark server
starts, the run ends CANCELED at once and the thread drops what it was getting when it gets it.
Cancel interrupts the session's Spark jobs first (killing the client does not stop them on the
server), then SIGTERM to the process group, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

from databricks.sdk.service.jobs import RunResultState, TerminationCodeCode

from aml_databricks.compute.executor import SparkLease, SparkProvider, TaskLaunch, TaskOutcome
from aml_databricks.compute.host import lifeline, procs
from aml_databricks.compute.host.forkserver import DriverForkServer, ForkedDriver, Standby
from aml_databricks.compute.host.logpump import LogPump
from aml_databricks.compute.host.private import open_private, private_folder, write_private
from aml_databricks.compute.host.standby import StandbySlot, session_of
from aml_databricks.compute.protocol import SECRET_FD_ENV, DriverResult, DriverTask, SparkConnection

log = logging.getLogger(__name__)

LOG_LIMIT = 5 * 1024 * 1024  # runs/get-output keeps the last 5 MB of logs
KILL_GRACE_S = 1.0
PUMP_DRAIN_S = 2.0
# Variables of the workspace process that a task must not inherit (credentials of the workspace itself).
_PRIVATE_ENV = ("AML_DATABRICKS_LOCAL_TOKEN", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET")

InstallLibraries = Callable[[list[dict[str, Any]], TextIO], list[Path]]


class DriverExecutor:
    """The `Executor` of the local workspace: one driver subprocess per task run."""

    def __init__(
        self,
        data_dir: Path,
        spark: SparkProvider | None = None,
        libraries: InstallLibraries | None = None,
        *,
        prefork: bool = False,
    ) -> None:
        """`prefork`: start drivers by forking a warm server that has pyspark imported (compute/forkserver.py),
        which saves a run about a second of imports; a fresh interpreter per run otherwise, and as fallback."""
        self._data_dir = Path(data_dir)
        self._spark = spark
        self._install_libraries = libraries
        self._executions: set[DriverExecution] = set()
        self._lock = threading.Lock()
        self._prefork = prefork
        self._fork_server: DriverForkServer | None = None
        self._closed = False
        self._standbys = StandbySlot(self._spawner) if prefork and spark is not None else None

    def start(self, launch: TaskLaunch, on_running: Callable[[], None]) -> DriverExecution:
        execution = DriverExecution(
            launch, on_running, self._spark, self._install_libraries, self._spawner(), self._standbys
        )
        with self._lock:
            self._executions = {e for e in self._executions if not e.done} | {execution}
        execution.begin()
        return execution

    def close(self) -> None:
        """Cancel runs still in flight. The Spark provider is left to whoever made it (LocalWorkspace)."""
        with self._lock:
            self._closed = True
            executions, self._executions = list(self._executions), set()
        for execution in executions:
            execution.cancel()
        if self._standbys is not None:
            self._standbys.close()
        with self._lock:
            fork_server, self._fork_server = self._fork_server, None
        if fork_server is not None:
            fork_server.close()

    def _spawner(self) -> DriverForkServer | None:
        """The fork server, (re)started on demand; None when not wanted or it can't start."""
        if not self._prefork:
            return None
        with self._lock:
            if self._closed:
                return None
            if self._fork_server is None or not self._fork_server.alive:
                if self._fork_server is not None:
                    self._fork_server.close()  # dead or stuck: don't leave its process behind
                try:
                    self._fork_server = DriverForkServer()
                except OSError as error:
                    log.warning("driver fork server did not start (%s): drivers start from scratch", error)
                    return None
            return self._fork_server


class DriverExecution:
    """One task run's driver: its start-up thread, its process, its outcome."""

    def __init__(
        self,
        launch: TaskLaunch,
        on_running: Callable[[], None],
        spark: SparkProvider | None,
        install_libraries: InstallLibraries | None,
        fork_server: DriverForkServer | None = None,
        standbys: StandbySlot | None = None,
    ) -> None:
        self._fork_server = fork_server
        self._standbys = standbys
        self._standby: Standby | None = None  # taken from `standbys` for this run, until handed the run
        self._launch = launch
        self._on_running = on_running
        self._spark = spark
        self._install_libraries = install_libraries
        self._run_dir = Path(launch.run_dir)
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._outcome: TaskOutcome | None = None
        self._cancelled = False
        self._lease: SparkLease | None = None
        self._process: subprocess.Popen[bytes] | ForkedDriver | None = None
        self._pump: LogPump | None = None
        self._thread = threading.Thread(target=self._run, name=f"task-run-{launch.run_id}", daemon=True)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def begin(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> TaskOutcome | None:
        self._finished.wait(timeout)
        return self._outcome

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled or self._outcome is not None:
                return  # idempotent, and a run that has ended stays as it ended
            self._cancelled = True
            lease, process = self._lease, self._process
        if lease is not None:
            _quietly(lease.interrupt)  # stop its Spark jobs on the server before the client goes
        if process is not None:
            _end_process_group(process)
            self._drain_log()
        logs, logs_truncated = self._logs()
        self._finish(
            TaskOutcome(
                RunResultState.CANCELED,
                TerminationCodeCode.CANCELED,
                "The run was cancelled.",
                logs=logs,
                logs_truncated=logs_truncated,
            )
        )

    # --- the start-up thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            private_folder(self._run_dir.parent)  # runs/: run output is the workspace user's alone
            private_folder(self._run_dir)
            (self._run_dir / "result.json").unlink(missing_ok=True)  # a stale result must not be read
            python_path = self._libraries()
            if python_path is None:
                return
            lease = self._acquire_spark()
            if self._spark is not None and lease is None:
                return
            self._driver_task(lease, python_path).write(self._run_dir)
            process = self._start_driver()
            if process is None:
                return
            if not self._cancelled:  # a cancel that came first already ended the run
                self._on_running()
            process.wait()
            # Background children of the task (`nohup ... &`) end with it, as on Databricks, and
            # release the output pipe so the log is complete.
            _end_process_group(process)
            self._drain_log()
            self._finish(self._read_outcome())
        except Exception as error:
            self._finish(_failed(TerminationCodeCode.INTERNAL_ERROR, f"{type(error).__name__}: {error}"))
        finally:
            process = self._process
            if process is not None and _running(process):
                _end_process_group(process)  # start-up failed after the driver started: leave nothing behind
            if self._standby is not None:  # taken, never handed this run (cancelled, failed start-up)
                self._standby.dismiss()
            lease = self._lease
            self._release()
            if lease is not None and self._standbys is not None:
                self._standbys.refill(lease.remote)

    def _libraries(self) -> list[Path] | None:
        """Extra python_path entries; None when the run ended here (cancelled or failed)."""
        libraries = self._launch.task.libraries
        if not libraries or self._install_libraries is None:
            return []
        try:
            with open_private(self._run_dir / "output.log", "a") as log:
                paths = self._install_libraries(libraries, cast(TextIO, log))
        except Exception as error:
            self._finish(_failed(TerminationCodeCode.LIBRARY_INSTALLATION_ERROR, f"{type(error).__name__}: {error}"))
            return None
        return None if self._cancelled else list(paths)

    def _acquire_spark(self) -> SparkLease | None:
        if self._spark is None or self._cancelled:
            return None
        standby = self._standbys.take() if self._standbys is not None else None
        try:
            session_id = session_of(standby.remote) if standby is not None else None
            lease = self._spark.acquire(self._launch.task.cluster, self._launch.run_id, session_id)
        except Exception as error:
            if standby is not None:
                standby.dismiss()
            self._finish(_failed(TerminationCodeCode.CLUSTER_ERROR, f"{type(error).__name__}: {error}"))
            return None
        if standby is not None:
            if standby.remote == lease.remote:
                self._standby = standby
            else:  # this run went to another server (or the standby's server was restarted)
                standby.dismiss()
        with self._lock:
            if not self._cancelled:
                self._lease = lease
                return lease
        _quietly(lease.release)  # cancelled while the server was starting
        return None

    def _driver_task(self, lease: SparkLease | None, python_path: list[Path]) -> DriverTask:
        """task.json: the task spec, this run's identity and token, and what start-up got it."""
        launch, spec = self._launch, self._launch.task
        spark = None
        if lease is not None:
            from aml_databricks.compute.host.cluster_specs import session_confs, usage_tag_confs

            confs = {**usage_tag_confs(spec.cluster), **session_confs(spec.new_cluster or {})}
            spark = SparkConnection(lease.remote, confs, getattr(lease, "samples_pending", None))
        return DriverTask(
            run_id=launch.run_id,
            parent_run_id=launch.parent_run_id,
            task_key=spec.task_key,
            kind=spec.kind,
            path=spec.path,
            source=spec.source,
            language=spec.language,
            widgets=spec.widgets,
            argv=spec.argv,
            fs=launch.fs,
            api_host=launch.api_host,
            api_token=launch.run_token,
            cluster=spec.compute,
            spark=spark,
            python_path=[str(p) for p in python_path],
        )

    def _start_driver(self) -> subprocess.Popen[bytes] | ForkedDriver | None:
        with self._lock:
            if self._cancelled:
                return None
            output_read, output_write = os.pipe()
            secrets_read, secrets_write = os.pipe()
            try:
                self._process = self._fork(output_write, secrets_write) or lifeline.popen(
                    [sys.executable, "-m", "aml_databricks.compute.driver", str(self._run_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=output_write,
                    stderr=output_write,
                    pass_fds=(secrets_write,),
                    cwd=self._run_dir,
                    env={**self._environment(), SECRET_FD_ENV: str(secrets_write)},
                    start_new_session=True,  # its own process group: cancel ends %sh children too
                )
            except BaseException:
                os.close(output_read)
                os.close(secrets_read)
                raise
            finally:
                os.close(output_write)
                os.close(secrets_write)
            self._pump = LogPump(output_read, secrets_read, self._run_dir / "output.log")
            self._pump.start()
            # lets a restarted workspace end a driver that a crash of this one left behind
            write_private(self._run_dir / "driver.pid", str(self._process.pid))
            return self._process

    def _fork(self, output_fd: int, secrets_fd: int) -> ForkedDriver | None:
        standby, self._standby = self._standby, None
        if standby is not None:
            try:
                return standby.hand_over(str(self._run_dir), str(self._run_dir), self._environment(), output_fd,
                                         secrets_fd)
            except OSError as error:
                log.warning("standby driver not usable (%s): forking one", error)
        if self._fork_server is None:
            return None
        try:
            return self._fork_server.spawn(
                str(self._run_dir), str(self._run_dir), self._environment(), output_fd, secrets_fd
            )
        except (OSError, RuntimeError, ValueError) as error:
            log.warning("driver fork server failed (%s): starting the driver from scratch", error)
            return None

    def _drain_log(self) -> None:
        """Let the pump write the driver's last output; bounded: a stray holder of the pipe can't block.
        Then deliver the log where the cluster's `cluster_log_conf` asks (cluster_logs.py)."""
        if self._pump is not None:
            self._pump.join(PUMP_DRAIN_S)
        cluster = self._launch.task.new_cluster
        if cluster and cluster.get("cluster_log_conf"):
            from aml_databricks.compute.host.cluster_logs import deliver
            from aml_databricks.compute.host.cluster_specs import cluster_id_for

            try:
                deliver(cluster, cluster_id_for(cluster), self._launch.fs, self._run_dir / "output.log")
            except (OSError, ValueError) as error:  # a bad destination must not change how the run ended
                log.warning("cluster log delivery of run %s failed: %s", self._launch.run_id, error)

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env["PYSPARK_PYTHON"] = sys.executable  # UDF workers need this interpreter's packages
        env["PYTHONUNBUFFERED"] = "1"
        spec = self._launch.task
        if spec.runtime_version is not None:
            env["DATABRICKS_RUNTIME_VERSION"] = spec.runtime_version
        if self._launch.api_host:
            # what a notebook's own credentials give on Databricks: databricks-sdk and MLflow's "databricks"
            # tracking URI reach this workspace as the run (the token is valid while the run is in flight)
            env["DATABRICKS_HOST"] = self._launch.api_host
            env["DATABRICKS_TOKEN"] = self._launch.run_token
        env.update(spec.spark_env_vars)
        return env

    # --- outcome -----------------------------------------------------------------------------

    def _read_outcome(self) -> TaskOutcome:
        logs, logs_truncated = self._logs()
        result = DriverResult.read(self._run_dir)
        if result is None:
            code = self._process.returncode if self._process is not None else None
            ended = f"The driver process ended{f' (exit code {code})' if code is not None else ''} without a result."
            tail = logs[-4000:].strip() if logs else ""
            message = ended + (f" Last output:\n{tail}" if tail else "")
            return TaskOutcome(
                RunResultState.FAILED,
                TerminationCodeCode.DRIVER_ERROR,
                ended,
                error=message,
                logs=logs,
                logs_truncated=logs_truncated,
            )
        return TaskOutcome(
            RunResultState.SUCCESS if result.succeeded else RunResultState.FAILED,
            TerminationCodeCode.SUCCESS if result.succeeded else TerminationCodeCode.RUN_EXECUTION_ERROR,
            "" if result.succeeded else _first_line(result.error or "The task failed."),
            notebook_result=result.notebook_result,
            truncated=result.truncated,
            error=result.error,
            error_trace=result.error_trace,
            logs=logs,
            logs_truncated=logs_truncated,
        )

    def _logs(self) -> tuple[str | None, bool]:
        """The last 5 MB of output.log (already redacted by the driver)."""
        try:
            with open(self._run_dir / "output.log", "rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - LOG_LIMIT))
                data = log.read()
        except OSError:
            return None, False
        return data.decode("utf-8", errors="replace"), size > LOG_LIMIT

    def _finish(self, outcome: TaskOutcome) -> None:
        """Record the outcome; the first one wins, and once cancelled only the cancel's own."""
        with self._lock:
            cancel_outcome = outcome.result_state == RunResultState.CANCELED
            if self._outcome is None and (cancel_outcome or not self._cancelled):
                self._outcome = outcome
        self._finished.set()

    def _release(self) -> None:
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            _quietly(lease.release)


def _first_line(text: str, limit: int = 1000) -> str:
    """A state_message is one short line; the full error is in `error`."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _failed(code: TerminationCodeCode, error: str) -> TaskOutcome:
    return TaskOutcome(RunResultState.FAILED, code, error, error=error)


def _running(process: subprocess.Popen[bytes] | ForkedDriver) -> bool:
    return not process.exited if isinstance(process, ForkedDriver) else process.poll() is None


def _end_process_group(process: subprocess.Popen[bytes] | ForkedDriver) -> None:
    """SIGTERM the driver's process group, SIGKILL it after a grace period; reap the driver."""
    procs.stop(process, KILL_GRACE_S, group=True, kill_wait_s=5.0)


def _quietly(call: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        call()
