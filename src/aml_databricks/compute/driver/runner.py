"""The task driver: `python -m aml_databricks.compute.driver RUN_DIR` runs one task run.

It reads RUN_DIR/task.json, runs the notebook cell by cell (or the Python file as `__main__`) and
always writes RUN_DIR/result.json, as compute/protocol.py ("the driver protocol") describes.
Its stdout and stderr are a pipe the executor copies to the run's output.log; the driver reports
each secret value it fetches on the descriptor named by AML_DATABRICKS_SECRET_FD so the executor
redacts it there (see compute/driver/redaction.py, compute/host/logpump.py), and redacts result.json's fields itself.

A notebook's cells share one globals dict with `spark`, `dbutils`, `display`, `displayHTML`,
`sql`, `table` and `getArgument`, as on Databricks; compute/driver/cells.py compiles each cell.
"""

from __future__ import annotations

import base64
import builtins
import io
import os
import shlex
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from aml_databricks import notebooks
from aml_databricks.compute.driver import cells
from aml_databricks.compute.driver.api import WorkspaceApi
from aml_databricks.compute.driver.cells import (
    cell_filename,
    compile_cell,
    register_source,
    split_sql,
    substitute_widgets,
)
from aml_databricks.compute.driver.dbutils import (
    NOTEBOOK_RESULT_LIMIT,
    DBUtils,
    NotebookExit,
    resolve_notebook_path,
)
from aml_databricks.compute.driver.display import Display, install_dataframe_display
from aml_databricks.compute.driver.outputs import OutputRecorder, capture_streams, observe_child_runs
from aml_databricks.compute.driver.paths import PathMapper
from aml_databricks.compute.driver.redaction import Redactor, SecretChannel
from aml_databricks.compute.driver.run_context import RunContext
from aml_databricks.compute.protocol import DriverResult, DriverTask
from aml_databricks.notebooks import Cell, Notebook

# frames of the driver itself are left out of error traces
_INTERNAL_FILES = frozenset({__file__, cells.__file__})
_UNSUPPORTED_CELL_LANGUAGES = {"scala": "Scala", "r": "R"}
_PIP_NOTICE = (
    "%pip is not run by the local workspace (no network, one shared environment): list packages in "
    "the task's `libraries` (pypi) or install them into the workspace's Python environment. Skipped: %pip "
)


class CellError(Exception):
    """A non-Python cell failed (`%sh` exit status, unsupported language, missing Spark)."""


class TaskResult:
    """What result.json will say; starts as a failure, so an unexpected exit still reports one."""

    def __init__(self) -> None:
        self.result_state: Literal["SUCCESS", "FAILED"] = "FAILED"
        self.notebook_result: str | None = None
        self.truncated = False
        self.error: str | None = "the driver ended before the task finished"
        self.error_trace: str | None = None

    def succeed(self, notebook_result: str | None = None) -> None:
        self.result_state, self.error, self.error_trace = "SUCCESS", None, None
        if notebook_result is not None:
            self.notebook_result, self.truncated = _truncate_utf8(notebook_result, NOTEBOOK_RESULT_LIMIT)

    def fail(self, error: str, error_trace: str | None) -> None:
        self.result_state, self.error, self.error_trace = "FAILED", error, error_trace

    def redacted(self, redactor: Redactor) -> DriverResult:
        def clean(text: str | None) -> str | None:
            return None if text is None else redactor.redact(text)

        result = clean(self.notebook_result)
        truncated = self.truncated
        if result is not None:  # redaction can lengthen a value: keep the cap
            result, cut = _truncate_utf8(result, NOTEBOOK_RESULT_LIMIT)
            truncated = truncated or cut
        return DriverResult(self.result_state, result, truncated, clean(self.error), clean(self.error_trace))


class TaskRunner:
    """Runs one task's code in one namespace."""

    def __init__(self, task: DriverTask, run_dir: Path | None = None) -> None:
        self.task = task
        self.run_dir = run_dir
        channel = SecretChannel.from_environment()
        self.redactor = Redactor(on_add=channel.report if channel is not None else None)
        self.api = WorkspaceApi(task.api_host, task.api_token) if task.api_host else None
        if self.api is not None:
            self.redactor.add(self.api.token)  # reachable through the notebook context, as on Databricks
        self.paths = PathMapper.from_config(task.fs)
        self.spark: Any = None
        self._path_stack = [task.path or "/notebook"]
        self.failed_cell: tuple[str, Cell] | None = None  # the innermost cell that raised
        context = RunContext(
            paths=self.paths,
            redactor=self.redactor,
            parameters=task.widgets,
            api=self.api,
            run_id=task.run_id,
            parent_run_id=task.parent_run_id,
            task_key=task.task_key,
            cluster=task.cluster,
            current_path=lambda: self._path_stack[-1],
            spark=lambda: self.spark,
        )
        self.dbutils = DBUtils(context, on_mounts_changed=self._apply_mounts)
        self.namespace: dict[str, Any] = {}
        # per-cell outputs for the run page and runs/export (compute/driver/outputs.py)
        self.outputs = OutputRecorder(run_dir, self.redactor.redact)
        self._display = Display(self.outputs)
        if self.api is not None:
            observe_child_runs(self.api, self.outputs)

    # --- set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        for entry in reversed(self.task.python_path):
            sys.path.insert(0, entry)
        if self.task.python_path:
            # %sh and subprocesses of the task see the same libraries.
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [*self.task.python_path, *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        if self.task.spark is not None:
            from aml_databricks.compute.driver import spark_session

            self.spark = spark_session.connect(self.task.spark.remote, self.paths, self.task.spark.confs)
            install_dataframe_display(self._display)
        if self.run_dir is not None:
            capture_streams(self.outputs)
        self.namespace = self._globals()

    def _globals(self) -> dict[str, Any]:
        namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "dbutils": self.dbutils,
            "display": self.display,
            "displayHTML": self._display.display_html,
            "getArgument": self.dbutils.widgets.getArgument,
            # `open("/dbfs/...")` in notebook code reads DBFS; libraries keep the real `open`.
            "open": self._open,
        }
        if self.spark is not None:
            namespace.update(spark=self.spark, sql=self.spark.sql, table=self.spark.table)
        return namespace

    def _open(self, file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and not isinstance(file, bytes):
            path = os.fspath(file)
            if isinstance(path, str):
                file = self.paths.python_local(path)
        return builtins.open(file, *args, **kwargs)

    def _apply_mounts(self) -> None:
        if self.spark is not None:
            from aml_databricks.compute.driver import spark_session

            spark_session.apply_mounts(self.spark, self.paths)

    # --- notebooks ---------------------------------------------------------------------------

    def run_notebook(self, notebook: Notebook, path: str) -> None:
        top_level = len(self._path_stack) == 1  # cells of a %run notebook are outputs of the %run cell
        if top_level:
            self.outputs.notebook([{"index": i, "language": cell.language, "source": cell.source}
                                   for i, cell in enumerate(notebook.cells)])
        for index, cell in enumerate(notebook.cells):
            try:
                if top_level:
                    with self.outputs.running(index, exits=(NotebookExit, SystemExit)):
                        self.run_cell(cell, path)
                else:
                    self.run_cell(cell, path)
            except BaseException as error:
                if self.failed_cell is None:  # unwinding from the innermost %run first
                    self.failed_cell = (path, cell)
                if top_level and not isinstance(error, NotebookExit | SystemExit):
                    self.outputs.error(index, *describe_error(error, self.failed_cell))
                raise

    def run_cell(self, cell: Cell, path: str) -> None:
        language = cell.language
        if language == "md" or (not cell.source.strip() and language != "run"):
            return
        if language == "python":
            exec(compile_cell(cell, path), self.namespace)
        elif language == "sql":
            self.run_sql(cell.source)
        elif language == "sh":
            self.run_shell(cell.source)
        elif language == "run":
            self.run_included(cell.source)
        elif language == "pip":
            print(_PIP_NOTICE + "%pip " + cell.source.strip(), flush=True)
        elif language == "fs":
            self.run_fs_magic(cell.source)
        elif language in _UNSUPPORTED_CELL_LANGUAGES:
            raise CellError(f"{_UNSUPPORTED_CELL_LANGUAGES[language]} cells are not supported by the local workspace")
        else:
            raise CellError(f"unknown magic command %{language}")

    def run_sql(self, source: str) -> None:
        if self.spark is None:
            raise CellError("%sql needs Spark, and this run has no cluster")
        result = None
        for statement in split_sql(substitute_widgets(source, self.dbutils.widgets.getArgument)):
            result = self.spark.sql(statement)
        if result is not None:
            self.display(result)

    def run_shell(self, source: str) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # The command inherits fds 1 and 2, so its output is redacted and lands in the run's log.
        completed = subprocess.run(["bash", "-c", source], check=False)
        if completed.returncode != 0:
            raise CellError(f"%sh command exited with code {completed.returncode}")

    def run_included(self, arguments: str) -> None:
        """`%run ./other $name="value"`: the other notebook's cells run here, in the same globals."""
        words = shlex.split(arguments)
        if not words:
            raise CellError("%run needs a notebook path")
        path = resolve_notebook_path(self._path_stack[-1], words[0])
        widget_arguments = {}
        for word in words[1:]:
            name, _, value = word.partition("=")
            widget_arguments[name.lstrip("$")] = value
        if self.api is None:
            raise CellError(f"%run {path}: the workspace API is needed to read the notebook")
        exported = self.api.get("/api/2.0/workspace/export", {"path": path, "format": "SOURCE"})
        source = base64.b64decode(exported.get("content", "")).decode()
        included = notebooks.parse(source, filename=path)
        self._path_stack.append(path)
        try:
            with self.dbutils.widgets.arguments(widget_arguments):
                self.run_notebook(included, path)
        finally:
            self._path_stack.pop()

    def run_fs_magic(self, source: str) -> None:
        """`%fs ls /mnt/x`, `%fs rm -r dbfs:/scratch`: a dbutils.fs call, its result displayed."""
        words = shlex.split(source)
        flags = {w for w in words[1:] if w.startswith("-")}
        arguments = [w for w in words[1:] if not w.startswith("-")]
        command = getattr(self.dbutils.fs, words[0], None) if words else None
        if command is None or words[0].startswith("_"):
            raise CellError(f"unknown %fs command: {source.strip()}")
        kwargs = {"recurse": True} if flags & {"-r", "--recurse"} else {}
        self.display(command(*arguments, **kwargs))

    # --- output ------------------------------------------------------------------------------

    def display(self, value: Any = None, *args: Any, **kwargs: Any) -> None:
        self._display.display(value, *args, **kwargs)

    # --- python files ------------------------------------------------------------------------

    def run_python_file(self, source: str, path: str, parameters: list[str]) -> None:
        sys.argv = [path, *parameters]
        self.namespace["__file__"] = path
        if os.path.isfile(path):  # a local file imports its sibling modules, as `python path` allows
            sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        code = compile(source, path, "exec")
        register_source(path, source)
        exec(code, self.namespace)

# --- errors --------------------------------------------------------------------------------------


def describe_error(error: BaseException, failed_cell: tuple[str, Cell] | None) -> tuple[str, str]:
    """(`ExceptionType: message`, the traceback without the driver's own frames)."""
    message = str(error)
    summary = f"{type(error).__name__}: {message}" if message else type(error).__name__
    exception = traceback.TracebackException.from_exception(error)
    for part in _chain(exception):
        kept = [frame for frame in part.stack if frame.filename not in _INTERNAL_FILES]
        part.stack = traceback.StackSummary.from_list(kept)
    if failed_cell is not None and failed_cell[1].language != "python":
        # A %sql / %sh cell has no Python frame of its own: name it the way Python frames read.
        path, cell = failed_cell
        first = cell.source.split("\n", 1)[0]
        frame = traceback.FrameSummary(
            cell_filename(path, cell), cell.first_line, f"%{cell.language}", lookup_line=False, line=first
        )
        exception.stack = traceback.StackSummary.from_list([frame, *exception.stack])
    return summary, "".join(exception.format())


def _chain(exception: traceback.TracebackException) -> Iterator[traceback.TracebackException]:
    seen: set[int] = set()
    pending: list[traceback.TracebackException | None] = [exception]
    while pending:
        part = pending.pop()
        if part is None or id(part) in seen:
            continue
        seen.add(id(part))
        yield part
        pending += [part.__cause__, part.__context__]


def _truncate_utf8(text: str, limit: int) -> tuple[str, bool]:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text, False
    return encoded[:limit].decode("utf-8", errors="ignore"), True


# --- entry point ---------------------------------------------------------------------------------


def run_task(task: DriverTask, result: TaskResult, runner: TaskRunner) -> None:
    """Run the task and record how it ended in `result`."""
    try:
        runner.prepare()
        path = task.path
        source = task.source
        if source is None:  # a python_file given as a local path: read it here
            source = Path(path.removeprefix("file:")).read_text()
        if task.kind == "python":
            runner.run_python_file(source, path, task.argv)
        else:
            notebook = notebooks.parse(source, task.language, filename=path)
            runner.run_notebook(notebook, path)
        result.succeed()
    except NotebookExit as exit_:
        result.succeed(exit_.value)
    except SystemExit as exit_:
        if exit_.code in (None, 0):
            result.succeed()
        else:
            result.fail(*describe_error(exit_, runner.failed_cell))
    except BaseException as error:
        result.fail(*describe_error(error, runner.failed_cell))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m aml_databricks.compute.driver RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    result = TaskResult()
    redactor = Redactor()
    runner: TaskRunner | None = None
    try:
        task = DriverTask.read(run_dir)
        runner = TaskRunner(task, run_dir)
        redactor = runner.redactor
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)  # lines reach the log as they are printed
        run_task(task, result, runner)
    except BaseException as error:
        result.fail(*describe_error(error, None))
    finally:
        # The Spark session is not stopped here: the executor's lease releases it on the server once
        # the outcome is recorded, which keeps a 0.03-0.3 s RPC off every run's critical path.
        result.redacted(redactor).write(run_dir)
    return 0 if result.result_state == "SUCCESS" else 1
