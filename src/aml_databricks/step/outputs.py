"""What the step hands on once the run has ended: the result, run.json, MLflow tags, --require-output.

    StepResult                      what `aml-databricks run` reports (and `--output-format json` prints)
    collect(result, last, gateway)  the final observation + each task run's exit value or error
    publish(result, …)              exit value line, --require-output, `<output>/_databricks/run.json`,
                                    MLflow tags on the step's own run, the closing line
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aml_databricks.errors import AmlDatabricksError
from aml_databricks.step.azureml import AzureMLContext
from aml_databricks.step.gateway import Gateway
from aml_databricks.step.report import Reporter
from aml_databricks.step.wait import RunObservation

RESULT_DIR = "_databricks"  # leading underscore: Spark and pyarrow skip it when reading the folder
RESULT_FILE = "run.json"
DEFAULT_MOUNT_POINT = "/mnt/azuremlblobstore"  # where the demo mounts the Azure ML blob store
MLFLOW_TAG_LIMIT = 5000  # MLflow caps tag values; the full exit value is in run.json
EXIT_VALUE_SHOWN = 1000  # characters of the exit value printed in the log
_DURATIONS = ("queue_duration", "setup_duration", "execution_duration", "cleanup_duration", "run_duration")


@dataclass
class StepResult:
    azureml_run_id: str
    run_id: int | None = None
    run_page_url: str | None = None
    reattached: bool = False
    life_cycle_state: str | None = None
    result_state: str | None = None
    state_message: str | None = None
    exit_value: str | None = None
    exit_value_truncated: bool = False
    ended_by: str = "terminal"  # terminal | stopped | deadline
    durations_seconds: dict[str, float] = field(default_factory=dict)
    start_time: int | None = None
    end_time: int | None = None
    task_runs: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = 0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect(result: StepResult, last: RunObservation, gateway: Gateway, reporter: Reporter) -> None:
    """Fill `result` from the run's last observation; read each task run's output once it is over
    (the exit value; on failure also print its error and trace)."""
    run = last.run
    result.life_cycle_state, result.result_state, result.state_message = (
        last.life_cycle_state,
        last.result_state,
        last.state_message,
    )
    result.start_time, result.end_time = run.start_time, run.end_time or None
    result.durations_seconds = {name: value / 1000 for name in _DURATIONS if (value := getattr(run, name, None))}
    succeeded = last.result_state == "SUCCESS"
    if result.ended_by == "deadline":
        result.result_state = "TIMEDOUT"
        succeeded = False
    for task in run.tasks or []:
        entry: dict[str, Any] = {"task_key": task.task_key, "run_id": task.run_id}
        if task.state is not None:
            entry["life_cycle_state"] = task.state.life_cycle_state.value if task.state.life_cycle_state else None
            entry["result_state"] = task.state.result_state.value if task.state.result_state else None
            entry["state_message"] = task.state.state_message or None
        result.task_runs.append(entry)
        if task.run_id is not None and last.terminal:
            _task_output(result, task.run_id, entry, gateway, reporter, want_error=not succeeded)
    result.exit_code = 0 if succeeded else 1
    if succeeded:
        result.message = f"run {result.run_id} succeeded"
    else:
        detail = f": {last.state_message}" if last.state_message else ""
        result.message = f"run {result.run_id} ended {result.result_state or last.life_cycle_state}{detail}"


def _task_output(
    result: StepResult,
    task_run_id: int,
    entry: dict[str, Any],
    gateway: Gateway,
    reporter: Reporter,
    *,
    want_error: bool,
) -> None:
    try:
        output = gateway.task_output(task_run_id)
    except AmlDatabricksError as exc:
        reporter.info(f"could not read the output of task run {task_run_id}: {exc}")
        return
    notebook = output.notebook_output
    if notebook is not None and notebook.result is not None:
        entry["exit_value"] = notebook.result
        if result.exit_value is None:
            result.exit_value = notebook.result
            result.exit_value_truncated = bool(notebook.truncated)
    if output.error or output.error_trace:
        entry["error"] = output.error
        if want_error:
            reporter.info(f"task {entry['task_key']} (run {task_run_id}) error: {output.error or ''}")
            if output.error_trace:
                reporter.block("error trace:", output.error_trace)


def publish(
    result: StepResult, ctx: AzureMLContext, gateway: Gateway, reporter: Reporter, *, require_output: bool
) -> None:
    """Tell the log, the next pipeline step and the step's MLflow run how the run ended."""
    if result.exit_value is not None:
        shown = result.exit_value
        if len(shown) > EXIT_VALUE_SHOWN:
            shown = shown[:EXIT_VALUE_SHOWN] + " …"
        reporter.info(f"exit value: {shown}")
    if result.exit_code == 0 and require_output:
        _check_output(result, ctx, gateway, reporter)
    _write_result_file(result, ctx.local_output, reporter)
    _mlflow_tags(result, ctx.mlflow_run_id, reporter)
    reporter.info(result.message)


def _check_output(result: StepResult, ctx: AzureMLContext, gateway: Gateway, reporter: Reporter) -> None:
    """--require-output: did the notebook write anything where the next step will read?"""
    local = ctx.local_output
    if local is not None and _has_files(local):
        return
    mounted = f"{DEFAULT_MOUNT_POINT}/{ctx.output_folder}"
    listing = gateway.dbfs_has_files(mounted)
    if listing is True or (listing is None and local is None):
        if listing is None:
            reporter.info(f"notice: cannot check the output at {ctx.output} from here; skipped")
        return
    where = f"{local} or dbfs:{mounted}" if local is not None else f"dbfs:{mounted}"
    result.exit_code = 1
    result.message = (
        f"run {result.run_id} succeeded but wrote nothing to the output ({where}); "
        "pass --no-require-output if that is expected"
    )


def _has_files(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return any(child.name != RESULT_DIR for child in folder.iterdir())


def _write_result_file(result: StepResult, local: Path | None, reporter: Reporter) -> None:
    if local is None:
        return
    target = local / RESULT_DIR / RESULT_FILE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(reporter.mask(json.dumps(result.as_dict(), indent=2)) + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        reporter.info(f"could not write {target}: {exc.strerror}")


def preload_mlflow(mlflow_run: str | None) -> None:
    """Import MLflow's client in the background while the run runs, when the step will log tags.

    The import takes about 2 s of CPU; done after the run ended, it was most of the time from the
    run's end to the step's exit. A thread that imports while the main one waits on the run costs
    nothing there, and `_mlflow_tags` importing the same module waits for it (the import lock).
    """
    if mlflow_run and "mlflow" not in sys.modules:
        threading.Thread(target=_import_mlflow_client, name="mlflow-import", daemon=True).start()


def _import_mlflow_client() -> None:
    with contextlib.suppress(Exception):  # not installed or broken: _mlflow_tags says so
        import mlflow.tracking  # noqa: F401


def _mlflow_tags(result: StepResult, mlflow_run: str | None, reporter: Reporter) -> None:
    if not mlflow_run:
        return
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        reporter.info("notice: mlflow is not installed; Databricks results not logged as MLflow tags")
        return
    tags = {
        "databricks.run_id": str(result.run_id),
        "databricks.run_page_url": result.run_page_url or "",
        "databricks.result_state": result.result_state or result.life_cycle_state or "",
        "databricks.exit_value": (result.exit_value or "")[:MLFLOW_TAG_LIMIT],
    }
    try:
        client = MlflowClient()
        # The step leaves with os._exit (cli.exit_now): a tag queued by MLflow's async logging
        # (MLFLOW_ENABLE_ASYNC_LOGGING) would be lost, so ask for synchronous calls where offered.
        wait = {"synchronous": True} if "synchronous" in inspect.signature(client.set_tag).parameters else {}
        for key, value in tags.items():
            client.set_tag(mlflow_run, key, value, **wait)
    except Exception as exc:
        reporter.info(f"notice: could not log MLflow tags: {type(exc).__name__}")
