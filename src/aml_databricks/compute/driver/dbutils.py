"""`dbutils` for notebooks and Python files run by the local workspace.

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
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aml_databricks.compute.driver.api import ApiError, WorkspaceApi
from aml_databricks.compute.driver.paths import PathMapper, is_storage_uri, normalize_mount_point
from aml_databricks.compute.driver.redaction import Redactor

NOTEBOOK_RESULT_LIMIT = 5 * 1024 * 1024  # bytes: Databricks keeps the first 5 MB of an exit value
_TERMINAL_LIFE_CYCLE_STATES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})


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


class FileInfo(NamedTuple):
    path: str
    name: str
    size: int
    modificationTime: int

    def isDir(self) -> bool:
        return self.name.endswith("/")

    def isFile(self) -> bool:
        return not self.isDir()


class MountInfo(NamedTuple):
    mountPoint: str
    source: str
    encryptionType: str = ""


class SecretScope(NamedTuple):
    name: str


class SecretMetadata(NamedTuple):
    key: str


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


class _Help:
    def help(self, method: str = "") -> None:
        names = sorted(n for n in dir(self) if not n.startswith("_") and n != "help")
        print(
            f"{type(self).__name__}: " + ", ".join(names) if not method else (getattr(self, method).__doc__ or method)
        )


# --- widgets -------------------------------------------------------------------------------------


@dataclass
class _Widget:
    kind: str
    default: str
    choices: tuple[str, ...] = ()
    label: str | None = None


class WidgetsUtils(_Help):
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


class NotebookUtils(_Help):
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
        if run.get("state", {}).get("life_cycle_state") in _TERMINAL_LIFE_CYCLE_STATES:
            return run
        if deadline is not None and time.monotonic() > deadline + 5:
            # The workspace enforces the timeout itself; this only guards against it not answering.
            api.post("/api/2.1/jobs/runs/cancel", {"run_id": run_id})
            raise WorkflowException(f"TIMEDOUT: the notebook run {run_id} did not end in {timeout_seconds} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


# --- fs ------------------------------------------------------------------------------------------


class FsUtils(_Help):
    def __init__(self, context: RunContext, on_mounts_changed: Callable[[], None] = lambda: None) -> None:
        self._context = context
        self._paths = context.paths
        self._on_mounts_changed = on_mounts_changed
        self._mount_sources = {mp: folder.as_uri() for mp, folder in self._paths.mounts.items()}

    def ls(self, dir: str) -> list[FileInfo]:
        local = self._existing(dir)
        if local.is_file():
            return [self._info(dir, local, local.name)]
        base = dir if dir.endswith("/") else dir + "/"
        return [self._info(base + child.name, child, child.name) for child in sorted(local.iterdir())]

    def head(self, file: str, maxBytes: int = 65536) -> str:
        with self._existing(file).open("rb") as handle:
            return handle.read(maxBytes).decode("utf-8", errors="replace")

    def put(self, file: str, contents: str, overwrite: bool = False) -> bool:
        local = self._paths.local(file)
        if local.exists() and not overwrite:
            raise FileExistsError(f"File {file} already exists; use overwrite=True to replace it.")
        local.parent.mkdir(parents=True, exist_ok=True)
        data = contents.encode()
        local.write_bytes(data)
        print(f"Wrote {len(data)} bytes.")
        return True

    def mkdirs(self, dir: str) -> bool:
        self._paths.local(dir).mkdir(parents=True, exist_ok=True)
        return True

    def cp(self, from_: str, to: str, recurse: bool = False) -> bool:
        source, target = self._existing(from_), self._paths.local(to)
        if source.is_dir():
            if not recurse:
                raise IsADirectoryError(f"{from_} is a directory: use recurse=True to copy it")
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name if target.is_dir() else target)
        return True

    def mv(self, from_: str, to: str, recurse: bool = False) -> bool:
        source, target = self._existing(from_), self._paths.local(to)
        if source.is_dir() and not recurse:
            raise IsADirectoryError(f"{from_} is a directory: use recurse=True to move it")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        return True

    def rm(self, dir: str, recurse: bool = False) -> bool:
        local = self._paths.local(dir)
        if not local.exists() and not local.is_symlink():
            return False
        if local.is_dir() and not local.is_symlink():
            if recurse:
                shutil.rmtree(local)
            else:
                local.rmdir()  # only an empty folder, as Databricks: non-empty needs recurse=True
        else:
            local.unlink()
        return True

    def mount(
        self,
        source: str,
        mount_point: str,
        encryption_type: str = "",
        extra_configs: Mapping[str, str] | None = None,
    ) -> bool:
        """Mount a local folder (`file:///...`) or a mapped storage URI at /mnt/<name>.

        `extra_configs` (account keys, OAuth settings) are accepted and not needed locally.
        """
        mount_point = normalize_mount_point(mount_point)
        if mount_point in self._paths.mounts:
            raise RuntimeError(f"Directory already mounted: {mount_point}")
        folder = self._paths.mount_source_folder(source)
        if not folder.is_dir():
            if not is_storage_uri(source):
                raise FileNotFoundError(f"mount source {source} is not a folder on this machine")
            folder.mkdir(parents=True, exist_ok=True)  # a container prefix exists once something is in it
        self._tell_workspace(
            "/api/2.0/local/mounts", {"mount_point": mount_point, "source": source, "local_path": str(folder)}
        )
        self._paths.mounts[mount_point] = folder
        self._mount_sources[mount_point] = source
        self._on_mounts_changed()
        return True

    def unmount(self, mount_point: str) -> bool:
        mount_point = normalize_mount_point(mount_point)
        if mount_point not in self._paths.mounts:
            raise RuntimeError(f"Directory not mounted: {mount_point}")
        self._tell_workspace("/api/2.0/local/mounts/delete", {"mount_point": mount_point})
        del self._paths.mounts[mount_point]
        self._mount_sources.pop(mount_point, None)
        self._on_mounts_changed()
        print(f"{mount_point} has been unmounted.")
        return True

    def mounts(self) -> list[MountInfo]:
        listed = [MountInfo("/", "DatabricksRoot"), MountInfo("/Volumes", "UnityCatalogVolumes")]
        listed += [MountInfo(mp, self._mount_sources.get(mp, str(folder))) for mp, folder in self._paths.mounts.items()]
        return listed

    def refreshMounts(self) -> bool:
        """Re-read the workspace's mount table (mounts made by other runs since this one started)."""
        api = self._context.require_api("dbutils.fs.refreshMounts")
        entries = api.get("/api/2.0/local/mounts").get("mounts") or []
        self._paths.mounts.clear()
        self._mount_sources.clear()
        for entry in entries:
            mount_point = normalize_mount_point(str(entry.get("mountPoint") or entry["mount_point"]))
            source = str(entry.get("source") or "")
            local = entry.get("local_path")
            self._paths.mounts[mount_point] = Path(local) if local else self._paths.mount_source_folder(source)
            self._mount_sources[mount_point] = source or self._paths.mounts[mount_point].as_uri()
        self._on_mounts_changed()
        return True

    def _tell_workspace(self, path: str, body: dict[str, str]) -> None:
        """Persist a mount change for later runs; without that endpoint it stays this run's own."""
        if self._context.api is None:
            return
        try:
            self._context.api.post(path, body)
        except ApiError as error:
            if not _endpoint_missing(error):
                raise

    def _existing(self, path: str) -> Path:
        local = self._paths.local(path)
        if not local.exists():
            raise FileNotFoundError(f"File {path} does not exist.")
        return local

    @staticmethod
    def _info(shown: str, local: Path, name: str) -> FileInfo:
        stat = local.stat()
        if local.is_dir():
            return FileInfo(shown.rstrip("/") + "/", name + "/", 0, int(stat.st_mtime * 1000))
        return FileInfo(shown, name, stat.st_size, int(stat.st_mtime * 1000))


def _endpoint_missing(error: ApiError) -> bool:
    """The workspace doesn't offer this call (an older or partial server), as opposed to refusing it."""
    return error.status in (404, 405) or (error.status == 400 and "is not allowed for" in error.message)


# --- secrets -------------------------------------------------------------------------------------


class SecretsUtils(_Help):
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


class TaskValuesUtils(_Help):
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


class JobsUtils(_Help):
    def __init__(self, context: RunContext) -> None:
        self.taskValues = TaskValuesUtils(context)


# --- library -------------------------------------------------------------------------------------


LIBRARY_NOTICE = (
    "The local workspace installs no libraries from inside a run: list them in the task's "
    "`libraries` (pypi) or install them into the workspace's Python environment."
)


class LibraryUtils(_Help):
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


class DBUtils(_Help):
    def __init__(self, context: RunContext, on_mounts_changed: Callable[[], None] = lambda: None) -> None:
        self.widgets = WidgetsUtils(context.parameters)
        self.notebook = NotebookUtils(context)
        self.fs = FsUtils(context, on_mounts_changed)
        self.secrets = SecretsUtils(context)
        self.jobs = JobsUtils(context)
        self.library = LibraryUtils()
