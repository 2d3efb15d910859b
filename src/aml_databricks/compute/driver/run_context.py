"""What every part of `dbutils` shares: the run it serves (`RunContext`) and Databricks' `help()`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aml_databricks.compute.driver.api import WorkspaceApi
from aml_databricks.compute.driver.paths import PathMapper
from aml_databricks.compute.driver.redaction import Redactor


@dataclass
class RunContext:
    """What `dbutils` needs to know about the run it serves."""

    paths: PathMapper
    redactor: Redactor
    parameters: dict[str, str] = field(default_factory=dict)
    api: WorkspaceApi | None = None
    run_id: int | None = None
    parent_run_id: int | None = None
    task_key: str = ""
    cluster: dict[str, Any] = field(default_factory=dict)  # new_cluster / existing_cluster_id of the task
    current_path: Callable[[], str] = lambda: "/"  # the notebook being run (changes inside %run)
    spark: Callable[[], Any] = lambda: None  # the run's SparkSession, if it has one

    def require_api(self, what: str) -> WorkspaceApi:
        if self.api is None:
            raise RuntimeError(f"{what} needs the workspace API, and this run was started without one")
        return self.api


class Help:
    def help(self, method: str = "") -> None:
        names = sorted(n for n in dir(self) if not n.startswith("_") and n != "help")
        print(
            f"{type(self).__name__}: " + ", ".join(names) if not method else (getattr(self, method).__doc__ or method)
        )
