"""The driver protocol: the two files between the host (the workspace process) and one task run's driver.

    python -m aml_databricks.compute.driver RUN_DIR

The host writes `RUN_DIR/task.json` (mode 0600, a `DriverTask`) and starts the driver with stdout
and stderr on a pipe that becomes `RUN_DIR/output.log`, and the descriptor of a second pipe named by
`SECRET_FD_ENV` (the driver reports each secret value it fetches there, for redaction). The driver
always writes `RUN_DIR/result.json` (a `DriverResult`) before it exits; no result file after the
process ends means the driver crashed (the task fails with DRIVER_ERROR).

task.json:

    {"run_id": 12, "parent_run_id": 11, "task_key": "main",
     "kind": "notebook" | "python",
     "path": "/Users/me/nb", "source": "<notebook or python source>", "language": "PYTHON" | "SQL",
     "parameters": {"widget": "value"}  |  ["argv", "..."],
     "api": {"host": "http://127.0.0.1:PORT", "token": "<run token>"},
     "spark": {"remote": "sc://127.0.0.1:PORT/;session_id=<uuid>", "confs": {...}} | null,
     "fs": {"dbfs_root": "<abs>", "volumes_root": "<abs>",
            "mounts": {"/mnt/azuremlblobstore": "<abs local folder>"},
            "storage": {"abfss://c@a.dfs.core.windows.net": "<abs local folder>"}},
     "cluster": {"new_cluster": {...}} | {"existing_cluster_id": "..."} | {},
     "python_path": ["<library folder>"]}

result.json:

    {"result_state": "SUCCESS" | "FAILED", "notebook_result": str | null, "truncated": bool,
     "error": str | null, "error_trace": str | null}

Standard library only: both processes import it, and the driver pays for every import on every run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TASK_FILE = "task.json"
RESULT_FILE = "result.json"
# The environment variable naming the descriptor on which the driver reports secret values.
SECRET_FD_ENV = "AML_DATABRICKS_SECRET_FD"

TaskKind = Literal["notebook", "python"]


def dbfs_root(data_dir: Path) -> Path:
    """Where DBFS lives in a data dir: `dbfs:/x`, `/dbfs/x` and Spark's `/x` all land in `<this>/x`."""
    return Path(data_dir) / "dbfs"


def volumes_root(data_dir: Path) -> Path:
    """Where Unity Catalog volumes live in a data dir: `/Volumes/c/s/v/x` is `<this>/c/s/v/x`."""
    return Path(data_dir) / "volumes"


@dataclass(frozen=True)
class FileSystem:
    """The file system a task sees: task.json's `fs` object (compute/driver/paths.py maps paths with it)."""

    dbfs_root: str
    volumes_root: str
    mounts: dict[str, str] = field(default_factory=dict)  # "/mnt/x" -> local folder
    storage: dict[str, str] = field(default_factory=dict)  # "abfss://c@a.dfs.core.windows.net" -> local folder

    @classmethod
    def of_data_dir(
        cls, data_dir: Path, mounts: Mapping[str, str] | None = None, storage: Mapping[str, str] | None = None
    ) -> FileSystem:
        return cls(str(dbfs_root(data_dir)), str(volumes_root(data_dir)), dict(mounts or {}), dict(storage or {}))

    def to_json(self) -> dict[str, Any]:
        return {"dbfs_root": self.dbfs_root, "volumes_root": self.volumes_root,
                "mounts": dict(self.mounts), "storage": dict(self.storage)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileSystem:
        return cls(
            str(data["dbfs_root"]),
            str(data["volumes_root"]),
            {str(k): str(v) for k, v in (data.get("mounts") or {}).items()},
            {str(k): str(v) for k, v in (data.get("storage") or {}).items()},
        )


@dataclass(frozen=True)
class SparkConnection:
    """task.json's `spark`: the run's own session on a warm server and the cluster's runtime confs for it."""

    remote: str  # sc://127.0.0.1:<port>/;session_id=<uuid>;user_id=...
    confs: dict[str, str] = field(default_factory=dict)
    # While this file exists the server's `samples` tables are being installed (compute/host/samples.py):
    # a query that finds none of them waits for it to go. None: no sample tables on this server.
    samples_pending: str | None = None


@dataclass(frozen=True)
class DriverTask:
    """task.json: everything the driver needs; it never sees the Jobs API's task settings."""

    run_id: int | None
    parent_run_id: int | None
    task_key: str
    kind: TaskKind
    path: str
    source: str | None  # None: a python file on this machine's disk, read by the driver
    language: str | None  # PYTHON | SQL for notebooks
    widgets: dict[str, str]  # a notebook's parameters (base_parameters), already strings
    argv: list[str]  # a python file's parameters
    fs: FileSystem
    api_host: str = ""  # empty: no workspace to call back (a driver started by hand)
    api_token: str = ""
    cluster: dict[str, Any] = field(default_factory=dict)  # for `dbutils.notebook.run` children
    spark: SparkConnection | None = None
    python_path: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "parent_run_id": self.parent_run_id,
            "task_key": self.task_key,
            "kind": self.kind,
            "path": self.path,
            "source": self.source,
            "language": self.language,
            "parameters": list(self.argv) if self.kind == "python" else dict(self.widgets),
            "api": {"host": self.api_host, "token": self.api_token},
            "spark": None if self.spark is None else {"remote": self.spark.remote, "confs": dict(self.spark.confs),
                                                      "samples_pending": self.spark.samples_pending},
            "fs": self.fs.to_json(),
            "cluster": dict(self.cluster),
            "python_path": list(self.python_path),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriverTask:
        kind: TaskKind = "python" if data.get("kind") == "python" else "notebook"
        parameters = data.get("parameters")
        api = data.get("api") or {}
        spark = data.get("spark")
        return cls(
            run_id=data.get("run_id"),
            parent_run_id=data.get("parent_run_id"),
            task_key=str(data.get("task_key") or ""),
            kind=kind,
            path=str(data.get("path") or ""),
            source=data.get("source"),
            language=data.get("language"),
            widgets={str(k): str(v) for k, v in parameters.items()} if isinstance(parameters, dict) else {},
            argv=[str(p) for p in parameters] if isinstance(parameters, list) else [],
            fs=FileSystem.from_json(data["fs"]),
            api_host=str(api.get("host") or ""),
            api_token=str(api.get("token") or ""),
            cluster=dict(data.get("cluster") or {}),
            spark=SparkConnection(str(spark["remote"]), dict(spark.get("confs") or {}),
                                  spark.get("samples_pending")) if spark else None,
            python_path=[str(p) for p in data.get("python_path") or []],
        )

    def write(self, run_dir: Path) -> None:
        """RUN_DIR/task.json, mode 0600 (it holds the run token) even if the file was there, wider."""
        descriptor = os.open(Path(run_dir) / TASK_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(self.to_json(), handle)

    @classmethod
    def read(cls, run_dir: Path) -> DriverTask:
        return cls.from_json(json.loads((Path(run_dir) / TASK_FILE).read_text()))


@dataclass(frozen=True)
class DriverResult:
    """result.json: how the task's code ended, already redacted by the driver."""

    result_state: Literal["SUCCESS", "FAILED"]
    notebook_result: str | None = None  # dbutils.notebook.exit value, first 5 MB
    truncated: bool = False
    error: str | None = None  # `ExceptionType: message`
    error_trace: str | None = None  # the traceback without the driver's own frames

    @property
    def succeeded(self) -> bool:
        return self.result_state == "SUCCESS"

    def to_json(self) -> dict[str, Any]:
        return {"result_state": self.result_state, "notebook_result": self.notebook_result,
                "truncated": self.truncated, "error": self.error, "error_trace": self.error_trace}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriverResult:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            "SUCCESS" if data.get("result_state") == "SUCCESS" else "FAILED",
            text("notebook_result"),
            bool(data.get("truncated")),
            text("error"),
            text("error_trace"),
        )

    def write(self, run_dir: Path) -> None:
        """Written whole or not at all: the host never reads a half-written file."""
        partial = Path(run_dir) / (RESULT_FILE + ".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(self.to_json(), handle)
        os.replace(partial, Path(run_dir) / RESULT_FILE)

    @classmethod
    def read(cls, run_dir: Path) -> DriverResult | None:
        """None when there is no (readable) result: the driver crashed."""
        try:
            return cls.from_json(json.loads((Path(run_dir) / RESULT_FILE).read_text()))
        except (OSError, ValueError, AttributeError):
            return None
