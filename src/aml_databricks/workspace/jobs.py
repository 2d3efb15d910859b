"""The Jobs API: runs and jobs, rendered the way each API version renders them."""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from typing import Any

from databricks.sdk.service.jobs import RunType

from aml_databricks.workspace import lifecycle, repair
from aml_databricks.workspace.errors import InvalidParameterValue, InvalidState, JobNotFound, RunNotFound
from aml_databricks.workspace.models import (
    MAX_INT64,
    CancelAllRuns,
    JobReset,
    JobUpdate,
    RepairRun,
    RunNow,
    parse,
)
from aml_databricks.workspace.payload import coerce_scalars, normalize_run
from aml_databricks.workspace.runs import Run, TaskRun, latest_attempts
from aml_databricks.workspace.scheduler import Scheduler
from aml_databricks.workspace.store import Store
from aml_databricks.workspace.wire import encode_json

MULTI_TASK_OUTPUT = (
    "Retrieving the output of runs with multiple tasks is not supported. "
    "Please retrieve the output of each individual task run instead."
)
LEGACY_TASK_FIELDS = ("notebook_task", "spark_python_task")
RENDER_CACHE_SIZE = 4096
RUN_TYPES = tuple(t.value for t in RunType)
# jobs/update merges these arrays entry by entry, by their key field; other fields are replaced whole.
KEYED_ARRAYS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "environments": "environment_key"}


def _int(value: Any, name: str) -> int:
    """An id or timestamp: Databricks' fields are int64, and SQLite's INTEGER is too."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidParameterValue(f"{name} must be an integer, got {value!r}.")
    try:
        number = int(value)
    except ValueError:
        raise InvalidParameterValue(f"{name} must be an integer, got {value!r}.") from None
    if not 0 <= number <= MAX_INT64:
        raise InvalidParameterValue(f"{name} must be between 0 and {MAX_INT64}, got {number}.")
    return number


def _optional_int(value: Any, name: str) -> int | None:
    return None if value in (None, "") else _int(value, name)


def _page(value: Any, default: int, low: int, high: int, name: str) -> int:
    number = default if value in (None, "") else _int(value, name)
    if not low <= number <= high:
        raise InvalidParameterValue(f"{name} must be between {low} and {high}.")
    return number


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


class Jobs:
    def __init__(self, store: Store, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler
        # run id -> (life_cycle_state shown instead, until monotonic time): lets client authors see how
        # their code copes with a state it has never met.
        self._shown_states: dict[int, tuple[str, float]] = {}
        self._rendered: OrderedDict[tuple[Any, str, bool], tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    # -- runs -----------------------------------------------------------------------------

    def submit(self, body: dict[str, Any], *, from_run: bool = False) -> dict[str, Any]:
        """`from_run`: submitted with a run token (`dbutils.notebook.run`): it runs inside its parent's slot."""
        run_id, _ = self.scheduler.submit(normalize_run(body), nested=from_run)
        return {"run_id": run_id}

    def get_run_json(self, run_id: Any, version: str, include_history: bool = False) -> bytes:
        """runs/get as response bytes, reused while neither the run nor its task runs change: polling
        clients (20 of them, every second) are the hottest path of the server."""
        number = _int(run_id, "run_id") if run_id not in (None, "") else run_id
        key = (number, version, include_history)
        stamp = self.store.run_stamp(number) if isinstance(number, int) else -1
        with self._lock:
            cached = self._rendered.get(key)
            if cached is not None and cached[0] == stamp and not self._shown_states:
                self._rendered.move_to_end(key)
                return cached[1]
        body = encode_json(self.get_run(run_id, version, include_history))
        with self._lock:
            self._rendered[key] = (stamp, body)
            if len(self._rendered) > RENDER_CACHE_SIZE:
                self._rendered.popitem(last=False)
        return body

    def get_run(self, run_id: Any, version: str, include_history: bool = False) -> dict[str, Any]:
        record = self._load(run_id)
        if isinstance(record, TaskRun):  # a task run asked for as a run: show it as one
            return self._shown(self._task_as_run(record))
        attempts = self.store.task_runs(record.run_id)
        doc = self._render_run(record, attempts)
        if include_history:
            doc["repair_history"] = record.render_history([t.run_id for t in attempts])
        if version == "2.0" and record.format == "SINGLE_TASK":
            self._add_legacy_fields(doc)
        return self._shown(doc)

    def get_output(self, run_id: Any, version: str) -> dict[str, Any]:
        record = self._load(run_id)
        if isinstance(record, Run):
            if version != "2.0" or record.format != "SINGLE_TASK":
                raise InvalidParameterValue(MULTI_TASK_OUTPUT)
            (only,) = latest_attempts(self.store.task_runs(record.run_id))
            metadata = self.get_run(record.run_id, version)
            return {**self.store.get_output(only.run_id), "metadata": metadata}
        return {**self.store.get_output(record.run_id), "metadata": self._task_as_run(record)}

    def cancel(self, run_id: Any) -> dict[str, Any]:
        record = self._load(run_id)
        self.scheduler.cancel(record.run_id)
        return {}

    def cancel_all(self, body: dict[str, Any]) -> dict[str, Any]:
        """runs/cancel-all: every active run of a job, or (all_queued_runs, no job) every queued run."""
        request = parse(CancelAllRuns, coerce_scalars(body))
        if request.job_id is None and not request.all_queued_runs:
            raise InvalidParameterValue("Set job_id, or all_queued_runs to cancel the queued runs of every job.")
        if request.job_id is not None and self.store.get_job(request.job_id) is None:
            raise JobNotFound(request.job_id)
        active = self.store.list_runs(job_id=request.job_id, active_only=True, completed_only=False, offset=0,
                                      limit=10**6, terminal_states=lifecycle.TERMINAL_NAMES)
        for run in active:
            if request.job_id is not None or run.progress.life_cycle == lifecycle.L.QUEUED:
                self.scheduler.cancel(run.run_id)
        return {}

    def repair_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """runs/repair: re-run some tasks of an ended run inside it (repair.py)."""
        body = coerce_scalars(body)
        request = parse(RepairRun, body)
        record = self._load(request.run_id)
        if isinstance(record, TaskRun):
            raise InvalidParameterValue("Repair the run, not one of its task runs.")
        if self.scheduler.is_live(record.run_id):
            raise InvalidState(f"Run {record.run_id} is still active: it can be repaired once it has ended.")
        repair.check_latest_repair_id(record, request.latest_repair_id)
        attempts = latest_attempts(self.store.task_runs(record.run_id))
        keys = repair.tasks_to_rerun(attempts, rerun_tasks=request.rerun_tasks,
                                     all_failed=bool(request.rerun_all_failed_tasks),
                                     dependents=bool(request.rerun_dependent_tasks))
        chosen = {t.task_key: copy.deepcopy(t.settings) for t in attempts if t.task_key in keys}
        _apply_overrides(list(chosen.values()), body)
        return {"repair_id": self.scheduler.repair(record, attempts, chosen)}

    def delete_run(self, run_id: Any) -> dict[str, Any]:
        record = self._load(run_id)
        if isinstance(record, TaskRun):
            raise InvalidParameterValue("Delete the run, not one of its task runs.")
        if self.scheduler.is_live(record.run_id):
            raise InvalidState(f"Run {record.run_id} is still active: cancel it before deleting it.")
        self.store.delete_run(record.run_id)
        return {}

    def list_runs(self, params: dict[str, Any]) -> dict[str, Any]:
        params = coerce_scalars(params)
        limit = _page(params.get("limit"), 20, 1, 25, "limit")
        offset = _page(params.get("page_token") or params.get("offset"), 0, 0, 10**9, "offset")
        job_id = params.get("job_id")
        run_type = params.get("run_type") or None
        if run_type is not None and run_type not in RUN_TYPES:
            raise InvalidParameterValue(f"run_type must be one of {', '.join(RUN_TYPES)}, got {run_type!r}.")
        runs = self.store.list_runs(
            job_id=None if job_id in (None, "") else _int(job_id, "job_id"),
            active_only=_flag(params.get("active_only")), completed_only=_flag(params.get("completed_only")),
            offset=offset, limit=limit + 1, terminal_states=lifecycle.TERMINAL_NAMES, run_type=run_type,
            start_time_from=_optional_int(params.get("start_time_from"), "start_time_from"),
            start_time_to=_optional_int(params.get("start_time_to"), "start_time_to"),
        )
        expand = _flag(params.get("expand_tasks"))
        shown = [self._shown(self._render_run(r, self.store.task_runs(r.run_id) if expand else None))
                 for r in runs[:limit]]
        body: dict[str, Any] = {"runs": shown, "has_more": len(runs) > limit}
        if len(runs) > limit:  # a next_page_token only when there is a next page: the SDK loops on it
            body["next_page_token"] = str(offset + limit)
        if offset:
            body["prev_page_token"] = str(max(0, offset - limit))
        return body

    # -- jobs -----------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        settings = coerce_scalars(copy.deepcopy(body))
        normalize_run(settings)  # refuse now what could never run
        return {"job_id": self.store.create_job(settings)}

    def get_job(self, job_id: Any) -> dict[str, Any]:
        number = _int(job_id, "job_id")
        found = self.store.get_job(number)
        if found is None:
            raise JobNotFound(job_id)
        settings, created = found
        return {"job_id": number, "creator_user_name": "local-user", "created_time": created,
                "settings": settings}

    def list_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = _page(params.get("limit"), 20, 1, 100, "limit")
        offset = _page(params.get("page_token") or params.get("offset"), 0, 0, 10**9, "offset")
        rows = self.store.list_jobs(offset, limit + 1)
        jobs = [{"job_id": j, "creator_user_name": "local-user", "created_time": c, "settings": s}
                for j, s, c in rows[:limit]]
        body: dict[str, Any] = {"jobs": jobs, "has_more": len(rows) > limit}
        if len(rows) > limit:
            body["next_page_token"] = str(offset + limit)
        return body

    def reset_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """jobs/reset: the job's settings replaced by new_settings, whole."""
        request = parse(JobReset, coerce_scalars(body))
        self._replace_job(request.job_id, request.new_settings)
        return {}

    def update_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """jobs/update: new_settings merged into the job's settings, fields_to_remove dropped."""
        request = parse(JobUpdate, coerce_scalars(body))
        found = self.store.get_job(request.job_id)
        if found is None:
            raise JobNotFound(request.job_id)
        settings = _merged(found[0], request.new_settings or {}, request.fields_to_remove or [])
        self._replace_job(request.job_id, settings)
        return {}

    def _replace_job(self, job_id: int, settings: dict[str, Any]) -> None:
        settings = coerce_scalars(copy.deepcopy(settings))
        normalize_run(settings)  # refuse now what could never run
        if not self.store.replace_job(job_id, settings):
            raise JobNotFound(job_id)

    def delete_job(self, job_id: Any) -> dict[str, Any]:
        if not self.store.delete_job(_int(job_id, "job_id")):
            raise JobNotFound(job_id)
        return {}

    def run_now(self, body: dict[str, Any]) -> dict[str, Any]:
        body = coerce_scalars(body)
        job_id = parse(RunNow, body).job_id
        found = self.store.get_job(job_id)
        if found is None:
            raise JobNotFound(job_id)
        settings = copy.deepcopy(found[0])
        _apply_overrides(settings.get("tasks") or [settings], body)
        if body.get("idempotency_token"):
            settings["idempotency_token"] = body["idempotency_token"]
        spec = normalize_run(settings)
        active = self.store.list_runs(job_id=job_id, active_only=True, completed_only=False, offset=0,
                                      limit=10**6, terminal_states=lifecycle.TERMINAL_NAMES)
        queue_enabled = bool((spec.get("queue") or {}).get("enabled"))
        skip = None
        if len(active) >= int(spec["max_concurrent_runs"] or 1) and not queue_enabled:
            skip = (f"Skipped: the job already has {len(active)} active run(s), its max_concurrent_runs "
                    f"is {spec['max_concurrent_runs']}.")
        run_id, _ = self.scheduler.submit(spec, job_id=job_id, run_type="JOB_RUN", skip_reason=skip)
        return {"run_id": run_id, "number_in_job": run_id}

    # -- fault injection ------------------------------------------------------------------

    def show_state(self, run_id: Any, life_cycle_state: str, seconds: float) -> None:
        """Report `life_cycle_state` (any string, known or not) for this run for `seconds`."""
        run_id = self._load(run_id).run_id
        with self._lock:
            self._shown_states[run_id] = (life_cycle_state, time.monotonic() + seconds)

    def end_run(self, run_id: Any, message: str) -> None:
        run_id = self._load(run_id).run_id
        with self._lock:
            self._shown_states.pop(run_id, None)  # the real end shows through
        if not self.scheduler.fail(run_id, message):
            raise InvalidState(f"Run {run_id} is not active.")

    # -- rendering ------------------------------------------------------------------------

    def _load(self, run_id: Any) -> Run | TaskRun:
        if run_id in (None, ""):
            raise InvalidParameterValue("run_id is required.")
        found = self.store.get_run(_int(run_id, "run_id"))
        if found is None:
            raise RunNotFound(run_id)
        return found

    def _render_run(self, run: Run, tasks: list[TaskRun] | None) -> dict[str, Any]:
        doc = run.render(self.scheduler.host)
        if tasks is not None:
            doc["tasks"] = [self._shown(t.render(self.scheduler.host)) for t in tasks]
        return doc

    def _shown(self, doc: dict[str, Any]) -> dict[str, Any]:
        if not self._shown_states:
            return doc
        with self._lock:
            shown = self._shown_states.get(doc["run_id"])
            if shown is None:
                return doc
            state, until = shown
            if time.monotonic() > until:
                del self._shown_states[doc["run_id"]]
                return doc
        doc["state"] = {"life_cycle_state": state, "state_message": f"Injected state {state}."}
        doc["status"] = {"state": state}
        return doc

    def _task_as_run(self, task: TaskRun) -> dict[str, Any]:
        parent = self._load(task.parent_run_id)
        assert isinstance(parent, Run)
        doc = task.render(self.scheduler.host)
        run = {k: v for k, v in doc.items() if k not in LEGACY_TASK_FIELDS}
        run.update({"run_name": parent.run_name, "run_type": parent.run_type,
                    "number_in_job": task.run_id, "original_attempt_run_id": task.run_id,
                    "parent_run_id": task.parent_run_id, "creator_user_name": parent.creator,
                    "format": "SINGLE_TASK", "trigger": parent.trigger,
                    "task": {k: doc[k] for k in LEGACY_TASK_FIELDS if k in doc}})
        return run

    @staticmethod
    def _add_legacy_fields(doc: dict[str, Any]) -> None:
        """API 2.0's single-task shape: `task`, `cluster_spec` and `cluster_instance` at the top."""
        only = doc["tasks"][-1]  # the latest attempt, once the run has been repaired
        doc["task"] = {k: only[k] for k in LEGACY_TASK_FIELDS if k in only}
        doc["cluster_spec"] = {k: only[k] for k in ("existing_cluster_id", "new_cluster", "libraries")
                               if k in only}
        doc["cluster_instance"] = only.get("cluster_instance", {})
        for name in ("setup_duration", "execution_duration", "cleanup_duration"):
            doc.setdefault(name, only.get(name, 0))


def _merged(settings: dict[str, Any], new: dict[str, Any], remove: list[str]) -> dict[str, Any]:
    """jobs/update as Databricks documents it: top-level fields of `new` replace the job's, except the
    keyed arrays, whose entries replace the job's entries of the same key and add the others; each
    `fields_to_remove` entry is a top-level field or `tasks/<task_key>`, `job_clusters/<key>`."""
    merged = copy.deepcopy(settings)
    for name, value in new.items():
        key_field = KEYED_ARRAYS.get(name)
        if key_field is None or not isinstance(value, list) or not isinstance(merged.get(name), list):
            merged[name] = copy.deepcopy(value)
            continue
        entries = {entry.get(key_field): entry for entry in merged[name] if isinstance(entry, dict)}
        for entry in value:
            if not isinstance(entry, dict) or not entry.get(key_field):
                raise InvalidParameterValue(f"Each entry of new_settings.{name} needs a {key_field}.")
            entries[entry[key_field]] = copy.deepcopy(entry)
        merged[name] = list(entries.values())
    for field in remove:
        name, _, key = field.partition("/")
        if key and name in KEYED_ARRAYS:
            before = merged.get(name) or []
            kept = [e for e in before if e.get(KEYED_ARRAYS[name]) != key]
            if len(kept) == len(before):
                raise InvalidParameterValue(f"fields_to_remove: {field} is not in the job's settings.")
            merged[name] = kept
        elif key:
            raise InvalidParameterValue(f"fields_to_remove: nested field {field} can't be removed; only "
                                        f"top-level fields and entries of {', '.join(KEYED_ARRAYS)}.")
        else:
            merged.pop(name, None)
    return merged


def _apply_overrides(tasks: list[dict[str, Any]], body: dict[str, Any]) -> None:
    """run-now's (and repair's) notebook_params / python_params / job_parameters onto copies of tasks."""
    for task in tasks:
        if body.get("notebook_params") and "notebook_task" in task:
            task["notebook_task"].setdefault("base_parameters", {}).update(body["notebook_params"])
        if body.get("job_parameters") and "notebook_task" in task:
            task["notebook_task"].setdefault("base_parameters", {}).update(body["job_parameters"])
        if body.get("python_params") and "spark_python_task" in task:
            task["spark_python_task"]["parameters"] = list(body["python_params"])

