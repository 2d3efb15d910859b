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
    """`help()` on dbutils and each of its modules: every command with its signature and summary."""

    def help(self, method: str = "") -> None:
        if method:
            command = getattr(self, method, None)
            if command is None or method.startswith("_"):
                print(f"{type(self).__name__} has no command {method!r}: see {_owner(self)}.help()")
                return
            print(_describe(method, command))
            return
        names = sorted(n for n in dir(self) if not n.startswith("_") and n != "help")
        print(_summary(self) or type(self).__name__)
        for name in names:
            print("  " + _describe(name, getattr(self, name)))


def _owner(value: object) -> str:
    name = type(value).__name__.removesuffix("Utils").lower()
    return "dbutils" if name == "db" else f"dbutils.{name}"


def _summary(value: object) -> str:
    return ((value.__doc__ or "").strip().splitlines() or [""])[0]


def _describe(name: str, value: object) -> str:
    import inspect

    if isinstance(value, Help):
        return f"{name}: {_summary(value) or type(value).__name__} (see {_owner(value)}.help())"
    try:
        parameters = inspect.signature(value).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        parameters = []  # type: ignore[assignment]
    parts = []
    for parameter in parameters:  # annotations are strings here (postponed evaluation): shown unquoted
        part = parameter.name
        if parameter.annotation is not inspect.Parameter.empty:
            part += f": {parameter.annotation}"
        if parameter.default is not inspect.Parameter.empty:
            part += f" = {parameter.default!r}"
        parts.append(part)
    signature = "(" + ", ".join(parts) + ")"
    summary = _summary(value)
    return f"{name}{signature}" + (f": {summary}" if summary else "")
