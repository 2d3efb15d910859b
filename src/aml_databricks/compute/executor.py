"""The seam between the workspace's scheduler and the compute that runs a task.

The scheduler owns the run's state machine and persistence; an executor only turns one
task run into an outcome. It is handed a `TaskLaunch` (its `TaskSpec` built once from the Jobs API
task by the workspace), calls `on_running` once the task's
own code starts (compute ready, libraries installed: PENDING -> RUNNING), and its
`Execution` answers `wait` with a `TaskOutcome`. `cancel` must be idempotent, bounded in time
and leave no process behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from databricks.sdk.service.jobs import RunResultState, TerminationCodeCode

from aml_databricks.compute.protocol import FileSystem, TaskKind


@dataclass(frozen=True)
class TaskSpec:
    """One task as compute runs it: built once from the Jobs API task by the workspace
    (workspace/launch.py), so nothing in compute reads the Jobs API's task settings."""

    task_key: str
    kind: TaskKind
    path: str  # the notebook's workspace path, or the python file's path
    source: str | None  # the notebook or python source, resolved by the workspace
    language: str | None = None  # PYTHON | SQL, for notebooks
    widgets: dict[str, str] = field(default_factory=dict)  # a notebook's base_parameters
    argv: list[str] = field(default_factory=list)  # a python file's parameters
    new_cluster: dict[str, Any] | None = None  # a Clusters API spec (see host/cluster_specs.py)
    existing_cluster_id: str | None = None
    libraries: list[dict[str, Any]] = field(default_factory=list)  # `libraries[]` (see host/libraries.py)
    timeout_seconds: int = 0  # 0: none

    @property
    def cluster(self) -> dict[str, Any]:
        """What `SparkProvider.acquire` takes: the new_cluster spec, `{"existing_cluster_id": ...}`, or {}."""
        if self.new_cluster:
            return dict(self.new_cluster)
        if self.existing_cluster_id:
            return {"existing_cluster_id": self.existing_cluster_id}
        return {}

    @property
    def compute(self) -> dict[str, Any]:
        """The task's compute as a child run names it (`dbutils.notebook.run` runs on the same cluster)."""
        if self.new_cluster is not None:
            return {"new_cluster": self.new_cluster}
        if self.existing_cluster_id is not None:
            return {"existing_cluster_id": self.existing_cluster_id}
        return {}

    @property
    def spark_env_vars(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in ((self.new_cluster or {}).get("spark_env_vars") or {}).items()}

    @property
    def runtime_version(self) -> str | None:
        """`15.4` of `spark_version` "15.4.x-scala2.12": code tests DATABRICKS_RUNTIME_VERSION to know
        it runs on Databricks."""
        version = str((self.new_cluster or {}).get("spark_version") or "")
        match = re.match(r"\d+(\.\d+)?", version)  # "19.x-scala2.13" (one line per major) is "19"
        return match.group() if match else None


@dataclass(frozen=True)
class TaskLaunch:
    """Everything an executor needs to run one task run."""

    run_id: int  # the task run's own id
    parent_run_id: int
    task: TaskSpec
    run_dir: Path  # private scratch folder of this task run (logs, result file)
    api_host: str  # the local workspace's URL, for the driver's calls back (%run, secrets, taskValues)
    run_token: str  # a bearer token valid only while this run is in flight
    fs: FileSystem  # where DBFS, volumes, mounts and storage URIs live on this machine


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
