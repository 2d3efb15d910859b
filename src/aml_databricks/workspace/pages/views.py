"""What the pages show, gathered from the Jobs API documents, the workspace objects and the run folders.

Each function returns plain dicts for the templates; nothing here renders HTML (Jinja2 escapes every
value the templates print, which is what keeps a notebook's `<script>` output text).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from aml_databricks.compute.driver.outputs import read_outputs
from aml_databricks.workspace.jobs import Jobs
from aml_databricks.workspace.lifecycle import TERMINAL

ACTIVE_STATES = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")
RUNS_PER_PAGE = 25
LOG_LIMIT = 512 * 1024  # characters of a task's log shown on its page
_PHASES = (("QUEUED", "queue_duration"), ("PENDING", "setup_duration"), ("RUNNING", "execution_duration"),
           ("TERMINATING", "cleanup_duration"))
_TERMINAL = {state.value for state in TERMINAL}


def when(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(ms: int | None) -> str:
    return f"{(ms or 0) / 1000:.1f} s"


def is_active(doc: dict[str, Any]) -> bool:
    return doc.get("state", {}).get("life_cycle_state") not in _TERMINAL


def runs_list(jobs: Jobs, *, state: str, name: str, page: int) -> dict[str, Any]:
    """Active runs first, then finished ones, newest first; filtered by state and name substring."""
    wanted = state.upper()
    needle = name.lower()
    matching: list[dict[str, Any]] = []
    offset = 0
    while True:  # the store pages 25 at a time; a local workspace holds thousands of runs, not millions
        batch = jobs.list_runs({"limit": 25, "offset": offset})
        for run in batch.get("runs", []):
            run_state = run.get("state", {})
            if wanted and wanted not in (run_state.get("life_cycle_state"), run_state.get("result_state")):
                continue
            if needle and needle not in str(run.get("run_name", "")).lower():
                continue
            matching.append(run)
        if not batch.get("has_more"):
            break
        offset += 25
    matching.sort(key=lambda run: (not is_active(run), -int(run["run_id"])))
    start = page * RUNS_PER_PAGE
    shown = matching[start:start + RUNS_PER_PAGE]
    return {"runs": [_summary(run) for run in shown], "page": page, "has_more": len(matching) > start + len(shown),
            "state": state, "name": name, "total": len(matching)}


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    state = run.get("state", {})
    return {"run_id": run["run_id"], "name": run.get("run_name", ""), "state": state.get("life_cycle_state", ""),
            "result": state.get("result_state", ""), "start": when(run.get("start_time")),
            "duration": seconds(run.get("run_duration") or 0), "active": is_active(run)}


def run_view(jobs: Jobs, runs_dir: Path, run_id: int) -> dict[str, Any]:
    """Everything the run page shows for a run or a task run."""
    doc = jobs.get_run(run_id, "2.1")
    tasks = doc.get("tasks")
    state = doc.get("state", {})
    view: dict[str, Any] = {
        "run_id": doc["run_id"], "name": doc.get("run_name", ""), "active": is_active(doc),
        "state": state.get("life_cycle_state", ""), "result": state.get("result_state", ""),
        "message": state.get("state_message", ""), "start": when(doc.get("start_time")),
        "end": when(doc.get("end_time")), "duration": seconds(doc.get("run_duration")),
        # a one-task run's phases are its task's (Databricks reports multi-task durations per task)
        "timeline": [{"phase": phase, "duration": seconds((tasks[0] if tasks and len(tasks) == 1 else doc).get(key))}
                     for phase, key in _PHASES],
        "parent_run_id": doc.get("parent_run_id"), "tasks": [], "task": None,
    }
    view["caller_run_id"] = caller_of(runs_dir, int(doc["run_id"]), [t.get("run_id") for t in tasks or []])
    if tasks is not None:
        view["tasks"] = [_task_summary(task) for task in tasks]
        view["parameters"] = _parameters(doc)
        if len(tasks) == 1:  # a one-time run of one task: its cells on the run's own page
            view["task"] = _task_detail(jobs, runs_dir, tasks[0])
    else:  # a task run shown as a run
        view["task"] = _task_detail(jobs, runs_dir, {**doc, **doc.get("task", {})})
    view["children"] = [] if view["task"] is None else [
        {"run_id": out["run_id"], "name": out.get("name", "")}
        for cell in view["task"]["cells"] for out in cell["outputs"] if out.get("kind") == "notebook_run"]
    return view


def _parameters(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in ("job_parameters", "overriding_parameters"):
        if doc.get(key):
            found[key] = doc[key]
    return found


def _task_summary(task: dict[str, Any]) -> dict[str, Any]:
    state = task.get("state", {})
    return {"task_key": task.get("task_key", ""), "run_id": task.get("run_id"),
            "depends_on": [d.get("task_key", "") for d in task.get("depends_on", [])],
            "state": state.get("life_cycle_state", ""), "result": state.get("result_state", ""),
            "message": state.get("state_message", ""), "duration": seconds(task.get("execution_duration"))}


def _task_detail(jobs: Jobs, runs_dir: Path, task: dict[str, Any]) -> dict[str, Any]:
    task_run_id = int(task["run_id"])
    folder = runs_dir / str(task_run_id)
    kind = next((k for k in ("notebook_task", "spark_python_task", "python_wheel_task", "sql_task")
                 if k in task), "task")
    spec = task.get(kind, {})
    output = jobs.store.get_output(task_run_id)
    cluster = {k: task[k] for k in ("new_cluster", "existing_cluster_id", "job_cluster_key") if task.get(k)}
    detail: dict[str, Any] = {
        "run_id": task_run_id, "task_key": task.get("task_key") or "", "kind": kind,
        "path": spec.get("notebook_path") or spec.get("python_file") or "",
        "parameters": spec.get("base_parameters") or spec.get("parameters") or {},
        "cluster": json.dumps(cluster, indent=2) if cluster else "",
        "exit_value": (output.get("notebook_output") or {}).get("result"),
        "error": output.get("error"), "error_trace": output.get("error_trace"),
        "files": sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else [],
        "cells": cells_of(read_outputs(folder)),
    }
    if not detail["cells"]:
        detail["log"] = read_log(folder)
    return detail


def read_log(folder: Path) -> str:
    try:
        with (folder / "output.log").open(errors="replace") as log:
            return log.read(LOG_LIMIT)
    except OSError:
        return ""


def cells_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The notebook's cells in order, each with its status (`ok`, `error`, `running`, `not run`) and outputs."""
    cells: dict[int, dict[str, Any]] = {}
    for record in records:
        kind = record.get("type")
        if kind == "notebook":
            cells = {int(c["index"]): {**c, "status": "not run", "outputs": []} for c in record.get("cells", [])}
        elif record.get("cell") in cells:
            cell = cells[int(record["cell"])]
            if kind == "start":
                cell["status"] = "running"
            elif kind == "end":
                cell["status"] = record.get("status", "ok")
            elif kind == "output":
                previous = cell["outputs"][-1] if cell["outputs"] else None
                if previous is not None and record.get("kind") in ("stdout", "stderr") and \
                        previous.get("kind") == record.get("kind"):  # text flushed in pieces: one block
                    cell["outputs"][-1] = {**previous, "text": previous.get("text", "") + record.get("text", "")}
                else:
                    cell["outputs"].append(record)
    return [cells[index] for index in sorted(cells)]


def caller_of(runs_dir: Path, run_id: int, task_run_ids: list[Any], look_back: int = 50) -> int | None:
    """The task run whose `dbutils.notebook.run` submitted this run: its outputs name it (see
    compute/driver/outputs.py); callers are older than their children, and recent."""
    for candidate in range(run_id - 1, max(0, run_id - look_back), -1):
        if candidate in task_run_ids:
            continue
        for record in read_outputs(runs_dir / str(candidate)):
            if record.get("kind") == "notebook_run" and record.get("run_id") == run_id:
                return candidate
    return None


def folder_file(runs_dir: Path, run_id: int, name: str) -> Path | None:
    """A file of a task run's folder by its plain name (never a path out of it)."""
    if "/" in name or "\\" in name or name.startswith(".") or name in ("task.json",):
        return None
    path = runs_dir / str(run_id) / name
    return path if path.is_file() else None
