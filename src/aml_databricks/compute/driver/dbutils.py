"""`dbutils` for notebooks and Python files run by the local workspace (`dbutils.fs`: fs_utils.py).

Names, signatures, return values and error messages follow Databricks' `dbutils` so notebooks run
unchanged. Everything that involves the workspace (secrets, task values, child runs, mounts) goes
through its HTTP API with the run's own token, as on Databricks; files go through `PathMapper`.
Without an API (a driver started by hand) those calls raise a clear error, and
`jobs.taskValues.get` returns its `debugValue` as Databricks does outside a job.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import json
import posixpath
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from aml_databricks.compute.driver.api import ApiError, WorkspaceApi
from aml_databricks.compute.driver.fs_utils import FsUtils
from aml_databricks.compute.driver.run_context import Help, RunContext
from aml_databricks.run_states import TERMINAL_LIFE_CYCLE_STATES

NOTEBOOK_RESULT_LIMIT = 5 * 1024 * 1024  # bytes: Databricks keeps the first 5 MB of an exit value


class InputWidgetNotDefined(Exception):
    """Raised by `dbutils.widgets.get` for a widget that is neither defined nor given as a parameter."""


class WorkflowException(Exception):
    """A child run started with `dbutils.notebook.run` did not succeed."""


class NotebookExit(BaseException):
    """`dbutils.notebook.exit(value)`: ends the run with SUCCESS. A BaseException, so a notebook's
    `except Exception` doesn't swallow it."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class SecretScope(NamedTuple):
    name: str


class SecretMetadata(NamedTuple):
    key: str


# --- widgets -------------------------------------------------------------------------------------


@dataclass
class _Widget:
    kind: str
    default: str
    choices: tuple[str, ...] = ()
    label: str | None = None


class WidgetsUtils(Help):
    """Widget definitions with defaults; the task's parameters override them (base_parameters)."""

    def __init__(self, parameters: Mapping[str, str]) -> None:
        self._parameters: list[dict[str, str]] = [dict(parameters)]  # strings already (TaskSpec.widgets)
        self._widgets: dict[str, _Widget] = {}

    def get(self, name: str) -> str:
        parameters = self._parameters[-1]
        if name in parameters:
            return parameters[name]
        widget = self._widgets.get(name)
        if widget is None:
            raise InputWidgetNotDefined(f"No input widget named {name} is defined")
        return widget.default

    def getArgument(self, name: str, optional: str | None = None) -> str | None:
        """Deprecated on Databricks but common in older notebooks: the value, or `optional`."""
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            return optional

    def getAll(self) -> dict[str, str]:
        return {**{name: w.default for name, w in self._widgets.items()}, **self._parameters[-1]}

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        self._widgets[name] = _Widget("text", str(defaultValue), (), label)

    def dropdown(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:
        self._define_choice("dropdown", name, defaultValue, choices, label)

    def combobox(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:
        # A combobox also accepts values outside its choices, so its default isn't checked.
        self._widgets[name] = _Widget("combobox", str(defaultValue), tuple(map(str, choices)), label)

    def multiselect(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:
        self._define_choice("multiselect", name, defaultValue, choices, label)

    def remove(self, name: str) -> None:
        if self._widgets.pop(name, None) is None:
            raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def removeAll(self) -> None:
        self._widgets.clear()

    @contextmanager
    def arguments(self, arguments: Mapping[str, str]) -> Iterator[None]:
        """Parameters of a `%run ./child $x="1"` while the child runs."""
        self._parameters.append({**self._parameters[-1], **{k: str(v) for k, v in arguments.items()}})
        try:
            yield
        finally:
            self._parameters.pop()

    def _define_choice(self, kind: str, name: str, default: str, choices: list[str], label: str | None) -> None:
        options = tuple(map(str, choices))
        if str(default) not in options:
            raise ValueError(f"Default value {default} is not in the list of choices for widget {name}")
        self._widgets[name] = _Widget(kind, str(default), options, label)


# --- notebook ------------------------------------------------------------------------------------


class NotebookUtils(Help):
    """Run other notebooks (run) and end this one with a value (exit)."""

    def __init__(self, context: RunContext) -> None:
        self._context = context
        # `dbutils.notebook.entry_point.getDbutils().notebook().getContext().notebookPath().get()`:
        # the JVM route notebooks use to learn their path, run id, and the API URL and token.
        self.entry_point = _EntryPoint(context)

    def exit(self, value: Any) -> None:
        """End the run with SUCCESS; `value` becomes runs/get-output's notebook_output.result."""
        raise NotebookExit("" if value is None else str(value))

    def run(self, path: str, timeout_seconds: int = 0, arguments: Mapping[str, Any] | None = None) -> str:
        """Run another notebook as a child run on the same cluster; its exit value, or WorkflowException."""
        api = self._context.require_api("dbutils.notebook.run")
        notebook_path = resolve_notebook_path(self._context.current_path(), path)
        task: dict[str, Any] = {
            "task_key": "notebook_run",
            "notebook_task": {
                "notebook_path": notebook_path,
                "base_parameters": {str(k): str(v) for k, v in (arguments or {}).items()},
            },
            **self._context.cluster,
        }
        payload: dict[str, Any] = {
            "run_name": f"dbutils.notebook.run {notebook_path}",
            "tasks": [task],
            "idempotency_token": uuid.uuid4().hex,  # makes the client's retry of a dropped submit safe
        }
        if timeout_seconds:
            payload["timeout_seconds"] = int(timeout_seconds)
        run_id = api.post("/api/2.1/jobs/runs/submit", payload)["run_id"]
        run = _wait_for_run(api, run_id, timeout_seconds)
        state = run.get("state", {})
        task_runs = run.get("tasks") or [run]
        output = api.get("/api/2.1/jobs/runs/get-output", {"run_id": task_runs[0]["run_id"]})
        if state.get("result_state") != "SUCCESS":
            detail = output.get("error") or state.get("state_message") or "the notebook run failed"
            raise WorkflowException(f"{state.get('result_state') or state.get('life_cycle_state')}: {detail}")
        return str((output.get("notebook_output") or {}).get("result") or "")


class _Option:
    """Scala's Option, which the context's getters return."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        if self._value is None:
            raise ValueError("None.get")  # Scala's NoSuchElementException
        return self._value

    def isDefined(self) -> bool:
        return self._value is not None

    def isEmpty(self) -> bool:
        return self._value is None

    def getOrElse(self, default: Any) -> Any:
        return default if self._value is None else self._value


class _NotebookContext:
    def __init__(self, context: RunContext) -> None:
        self._context = context

    def notebookPath(self) -> _Option:
        return _Option(self._context.current_path())

    def currentRunId(self) -> _Option:
        return _Option(self._context.run_id)

    def apiUrl(self) -> _Option:
        return _Option(self._context.api.host if self._context.api else None)

    def apiToken(self) -> _Option:
        """The run's own token, valid while the run is in flight (and redacted from its output)."""
        return _Option(self._context.api.token if self._context.api else None)

    def tags(self) -> _Tags:
        return _Tags(self._tag_values())

    def toJson(self) -> str:
        extra = {"notebook_path": self._context.current_path(), "api_url": self.apiUrl().getOrElse(None)}
        return json.dumps({"extraContext": extra, "tags": self._tag_values()})

    def _tag_values(self) -> dict[str, str]:
        tags = {"taskKey": self._context.task_key, "runId": str(self._context.run_id or "")}
        if self._context.parent_run_id is not None:
            tags["multitaskParentRunId"] = str(self._context.parent_run_id)
        return tags


class _Tags:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def apply(self, key: str) -> str:
        if key not in self._values:
            raise KeyError(f"key not found: {key}")
        return self._values[key]

    def get(self, key: str) -> _Option:
        return _Option(self._values.get(key))


class _EntryPoint:
    def __init__(self, context: RunContext) -> None:
        self._context = context

    def getDbutils(self) -> _EntryPoint:
        return self

    def notebook(self) -> _EntryPoint:
        return self

    def getContext(self) -> _NotebookContext:
        return _NotebookContext(self._context)

    def getNonUcApiToken(self) -> str | None:
        """The run's token (Databricks refreshes it; a local run's lasts as long as the run)."""
        return self._context.api.token if self._context.api else None

    def getDriverConf(self) -> _DriverConf:
        return _DriverConf()


class _DriverConf:
    def workflowSslTrustAll(self) -> bool:
        return False


def resolve_notebook_path(current: str, path: str) -> str:
    """`./x` and `../x` relative to the folder of the notebook that asks; absolute paths as given."""
    if path.startswith("/"):
        return posixpath.normpath(path)
    return posixpath.normpath(posixpath.join(posixpath.dirname(current) or "/", path))


def _wait_for_run(api: WorkspaceApi, run_id: int, timeout_seconds: int) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    delay = 0.1
    while True:
        run = api.get("/api/2.1/jobs/runs/get", {"run_id": run_id})
        if run.get("state", {}).get("life_cycle_state") in TERMINAL_LIFE_CYCLE_STATES:
            return run
        if deadline is not None and time.monotonic() > deadline + 5:
            # The workspace enforces the timeout itself; this only guards against it not answering.
            api.post("/api/2.1/jobs/runs/cancel", {"run_id": run_id})
            raise WorkflowException(f"TIMEDOUT: the notebook run {run_id} did not end in {timeout_seconds} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


# --- secrets -------------------------------------------------------------------------------------


class SecretsUtils(Help):
    """Secrets, fetched with the run's token; every value fetched is redacted from the run's output."""

    def __init__(self, context: RunContext) -> None:
        self._context = context

    def getBytes(self, scope: str, key: str) -> bytes:
        api = self._context.require_api("dbutils.secrets")
        encoded = api.get("/api/2.0/local/secrets/get", {"scope": scope, "key": key})["value"]
        value = base64.b64decode(encoded)
        with contextlib.suppress(UnicodeDecodeError):  # a binary secret isn't printed as text
            self._context.redactor.add(value.decode())
        return value

    def get(self, scope: str, key: str) -> str:
        return self.getBytes(scope, key).decode()

    def list(self, scope: str) -> list[SecretMetadata]:
        api = self._context.require_api("dbutils.secrets")
        return [SecretMetadata(s["key"]) for s in api.get("/api/2.0/secrets/list", {"scope": scope}).get("secrets", [])]

    def listScopes(self) -> builtins.list[SecretScope]:
        api = self._context.require_api("dbutils.secrets")
        return [SecretScope(s["name"]) for s in api.get("/api/2.0/secrets/scopes/list").get("scopes", [])]


# --- jobs.taskValues -----------------------------------------------------------------------------


class TaskValuesUtils(Help):
    def __init__(self, context: RunContext) -> None:
        self._context = context

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value for the tasks that depend on this one."""
        try:
            json.dumps(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"task value {key!r} must be JSON serialisable: {error}") from None
        api = self._context.require_api("dbutils.jobs.taskValues.set")
        api.post("/api/2.0/local/task-values/set", {"key": key, "value": value})

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:
        """A value set by task `taskKey` of this job run; `default` when it set none.

        Outside a job run (no workspace API), `debugValue`, as Databricks does interactively.
        """
        if self._context.api is None:
            if debugValue is None:
                raise TypeError("debugValue is required outside a job run")
            return debugValue
        try:
            query = {"task_key": taskKey, "key": key}
            return self._context.api.get("/api/2.0/local/task-values/get", query)["value"]
        except ApiError as error:
            if error.status != 404:
                raise
        if default is None:
            raise ValueError(f"No task value found for key {key!r} of task {taskKey!r}, and no default given")
        return default


class JobsUtils(Help):
    """The job's task values (jobs.taskValues) shared between its tasks."""

    def __init__(self, context: RunContext) -> None:
        self.taskValues = TaskValuesUtils(context)


# --- library -------------------------------------------------------------------------------------


LIBRARY_NOTICE = (
    "The local workspace installs no libraries from inside a run: list them in the task's "
    "`libraries` (pypi) or install them into the workspace's Python environment."
)


class LibraryUtils(Help):
    """Notebook-scoped libraries (not installed locally: see the task's libraries)."""

    def _notice(self, call: str) -> bool:
        print(f"dbutils.library.{call}: {LIBRARY_NOTICE}")
        return True

    def install(self, path: str) -> bool:
        return self._notice(f"install({path!r})")

    def installPyPI(self, project: str, version: str = "", repo: str = "", extras: str = "") -> bool:
        return self._notice(f"installPyPI({project!r})")

    def restartPython(self) -> None:
        print("dbutils.library.restartPython: nothing to restart locally (no library was installed).")

    def list(self) -> list[str]:
        self._notice("list()")
        return []


# --- the object notebooks see --------------------------------------------------------------------


class DBUtils(Help):
    """Databricks utilities: fs, notebook, widgets, secrets, jobs, library."""

    def __init__(self, context: RunContext, on_mounts_changed: Callable[[], None] = lambda: None) -> None:
        self.widgets = WidgetsUtils(context.parameters)
        self.notebook = NotebookUtils(context)
        self.fs = FsUtils(context, on_mounts_changed)
        self.secrets = SecretsUtils(context)
        self.jobs = JobsUtils(context)
        self.library = LibraryUtils()
        # Databricks' `dbutils` carries the JVM entry point at the top too; MLflow reaches for it
        # there when DATABRICKS_RUNTIME_VERSION says it runs on Databricks.
        self.entry_point = self.notebook.entry_point
