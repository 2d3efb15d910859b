"""The seam between the workspace's scheduler and the compute that runs a task.

The scheduler owns the run's state machine and persistence; an executor only turns one
task run into an outcome. It is handed a `TaskLaunch`, calls `on_running` once the task's
own code starts (compute ready, libraries installed: PENDING -> RUNNING), and its
`Execution` answers `wait` with a `TaskOutcome`. `cancel` must be idempotent, bounded in time
and leave no process behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from databricks.sdk.service.jobs import RunResultState, TerminationCodeCode


@dataclass(frozen=True)
class TaskLaunch:
    """Everything an executor needs to run one task run."""

    run_id: int  # the task run's own id
    parent_run_id: int
    task_key: str
    task: dict[str, Any]  # the task settings as submitted: notebook_task, new_cluster, libraries, ...
    run_dir: Path  # private scratch folder of this task run (logs, result file)
    api_host: str  # the local workspace's URL, for the driver's calls back (%run, secrets, taskValues)
    run_token: str  # a bearer token valid only while this run is in flight
    notebook_source: str | None = None  # notebook/python source already resolved from the workspace
    notebook_language: str | None = None  # PYTHON | SQL, for notebook sources
    # The file system the task sees, as the driver protocol's "fs" object: dbfs_root, volumes_root,
    # mounts {"/mnt/x": local folder}, storage {"abfss://c@a.dfs.core.windows.net": local folder}.
    fs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskOutcome:
    result_state: RunResultState
    termination_code: TerminationCodeCode
    state_message: str = ""
    notebook_result: str | None = None  # dbutils.notebook.exit value (first 5 MB)
    truncated: bool = False
    error: str | None = None
    error_trace: str | None = None
    logs: str | None = None  # stdout/stderr, last 5 MB (python files; notebooks too, for debugging)
    logs_truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Execution(Protocol):
    def wait(self, timeout: float | None = None) -> TaskOutcome | None:
        """Block up to `timeout` seconds; the outcome once the task has ended, else None."""

    def cancel(self) -> None:
        """Stop the task's work (Spark jobs included) and its processes. Idempotent."""


class Executor(Protocol):
    def start(self, launch: TaskLaunch, on_running: Callable[[], None]) -> Execution:
        """Begin the task without blocking on it; compute start-up happens in the background."""

    def close(self) -> None:
        """Release compute (servers, pools). Called once when the workspace stops."""


class SparkLease(Protocol):
    """One task run's hold on a Spark Connect server, with its own session id."""

    remote: str  # sc://127.0.0.1:<port>/;session_id=<uuid>

    def interrupt(self) -> None:
        """Interrupt every Spark job of this session (a second client with the same session id)."""

    def release(self) -> None:
        """Give the server back to the pool; idempotent."""


class SparkProvider(Protocol):
    def acquire(self, cluster: dict[str, Any], run_id: int, session_id: str | None = None) -> SparkLease:
        """Block until a server fit for this cluster spec (new_cluster dict, or {} for the default) is up.
        `session_id`: the lease's session (a standby driver's, already open); a new one when None."""

    def close(self) -> None:
        """Stop every server this provider started."""
