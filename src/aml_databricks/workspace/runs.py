"""The run model: what the workspace knows about a run and its task runs, typed, and how the Jobs API
shows it.

The scheduler changes these records, the store persists them (the JSON of the record, with the
columns queries filter on beside it), and the API renders its documents from them on read, so an
API document never carries control state and a record never carries presentation. `from_document`
reads the API documents a store of an older version persisted, for its one-time migration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState, TerminationCodeCode

from aml_databricks.workspace import lifecycle

L = RunLifeCycleState
R = RunResultState


@dataclass
class Progress:
    """Where a run or task run is in its lifecycle, and how it ended."""

    life_cycle: RunLifeCycleState = L.QUEUED
    result: RunResultState | None = None
    message: str = ""
    code: TerminationCodeCode | None = None  # only where it differs from what the result implies

    @property
    def terminal(self) -> bool:
        return self.life_cycle in lifecycle.TERMINAL

    def render(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return lifecycle.render_state(self.life_cycle, self.result, self.message, termination_code=self.code)

    def to_json(self) -> dict[str, Any]:
        return {"life_cycle": self.life_cycle.value, "result": self.result.value if self.result else None,
                "message": self.message, "code": self.code.value if self.code else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        return cls(L(data["life_cycle"]), R(data["result"]) if data.get("result") else None,
                   data.get("message", ""), TerminationCodeCode(data["code"]) if data.get("code") else None)


@dataclass
class Timing:
    """Epoch milliseconds and durations, as Databricks reports them."""

    start_time: int = 0
    end_time: int = 0
    queue_duration: int = 0
    setup_duration: int = 0
    execution_duration: int = 0
    cleanup_duration: int = 0

    @property
    def run_duration(self) -> int:
        return self.end_time - self.start_time if self.end_time else 0

    def render(self) -> dict[str, int]:
        return {"start_time": self.start_time, "end_time": self.end_time, "setup_duration": self.setup_duration,
                "execution_duration": self.execution_duration, "cleanup_duration": self.cleanup_duration,
                "run_duration": self.run_duration, "queue_duration": self.queue_duration}

    def to_json(self) -> dict[str, int]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timing:
        return cls(**{name: int(data.get(name) or 0) for name in TIMING_FIELDS})


TIMING_FIELDS = ("start_time", "end_time", "queue_duration", "setup_duration", "execution_duration",
                 "cleanup_duration")


@dataclass
class TaskRun:
    """One task of a run, run once."""

    run_id: int
    parent_run_id: int
    settings: dict[str, Any]  # the task as the request normalised it: task_key, notebook_task, ...
    cluster_id: str
    progress: Progress = field(default_factory=Progress)
    timing: Timing = field(default_factory=Timing)
    job_id: int | None = None
    attempt_number: int = 0

    @property
    def task_key(self) -> str:
        return str(self.settings["task_key"])

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "parent_run_id": self.parent_run_id, "settings": self.settings,
                "cluster_id": self.cluster_id, "progress": self.progress.to_json(),
                "timing": self.timing.to_json(), "job_id": self.job_id, "attempt_number": self.attempt_number}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRun:
        return cls(data["run_id"], data["parent_run_id"], data["settings"], data["cluster_id"],
                   Progress.from_json(data["progress"]), Timing.from_json(data["timing"]), data.get("job_id"),
                   data.get("attempt_number", 0))

    def render(self, host: str) -> dict[str, Any]:
        """The RunTask document of runs/get."""
        state, status = self.progress.render()
        doc: dict[str, Any] = {
            **self.settings, "run_id": self.run_id, "attempt_number": self.attempt_number,
            "run_page_url": page_url(host, self.run_id), **self.timing.render(),
            "cluster_instance": {"cluster_id": self.cluster_id, "spark_context_id": str(self.run_id)},
            "state": state, "status": status,
        }
        if self.job_id is not None:
            doc["job_id"] = self.job_id
        return doc


@dataclass
class Repair:
    """One entry of a run's repair history: the original attempt, or a repair of some of its tasks."""

    id: int
    kind: str  # ORIGINAL | REPAIR, the SDK's RepairHistoryItemType
    task_run_ids: list[int]
    progress: Progress = field(default_factory=Progress)
    start_time: int = 0
    end_time: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "task_run_ids": self.task_run_ids,
                "progress": self.progress.to_json(), "start_time": self.start_time, "end_time": self.end_time}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Repair:
        return cls(data["id"], data["kind"], list(data["task_run_ids"]), Progress.from_json(data["progress"]),
                   data.get("start_time", 0), data.get("end_time", 0))

    def render(self) -> dict[str, Any]:
        state, status = self.progress.render()
        return {"type": self.kind, "id": self.id, "start_time": self.start_time, "end_time": self.end_time,
                "state": state, "status": status, "task_run_ids": self.task_run_ids}


@dataclass
class Run:
    """A run: one submit or run-now, and the task runs it is made of."""

    run_id: int
    run_name: str
    run_type: str  # SUBMIT_RUN | JOB_RUN | WORKFLOW_RUN
    format: str  # SINGLE_TASK | MULTI_TASK
    creator: str
    progress: Progress = field(default_factory=Progress)
    timing: Timing = field(default_factory=Timing)
    job_id: int | None = None
    timeout_seconds: int = 0
    trigger: str = "ONE_TIME"
    attempt_number: int = 0
    repairs: list[Repair] = field(default_factory=list)  # empty until the first repair, then ORIGINAL first

    @property
    def latest_repair_id(self) -> int | None:
        return self.repairs[-1].id if len(self.repairs) > 1 else None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_name": self.run_name, "run_type": self.run_type, "format": self.format,
                "creator": self.creator, "progress": self.progress.to_json(), "timing": self.timing.to_json(),
                "job_id": self.job_id, "timeout_seconds": self.timeout_seconds, "trigger": self.trigger,
                "attempt_number": self.attempt_number, "repairs": [r.to_json() for r in self.repairs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(data["run_id"], data["run_name"], data["run_type"], data["format"], data["creator"],
                   Progress.from_json(data["progress"]), Timing.from_json(data["timing"]), data.get("job_id"),
                   data.get("timeout_seconds", 0), data.get("trigger", "ONE_TIME"), data.get("attempt_number", 0),
                   [Repair.from_json(r) for r in data.get("repairs", [])])

    def render(self, host: str) -> dict[str, Any]:
        """The Run document of runs/get and runs/list, without its tasks."""
        state, status = self.progress.render()
        doc: dict[str, Any] = {
            "run_id": self.run_id, "number_in_job": self.run_id, "original_attempt_run_id": self.run_id,
            "run_name": self.run_name, "run_type": self.run_type, "format": self.format,
            "creator_user_name": self.creator, "run_page_url": page_url(host, self.run_id), **self.timing.render(),
            "trigger": self.trigger, "attempt_number": self.attempt_number, "state": state, "status": status,
        }
        if self.job_id is not None:
            doc["job_id"] = self.job_id
        if self.timeout_seconds:
            doc["timeout_seconds"] = self.timeout_seconds
        return doc

    def render_history(self, task_run_ids: list[int]) -> list[dict[str, Any]]:
        """`repair_history` (runs/get?include_history=true): the original attempt, then each repair.
        A run never repaired has its original attempt alone, which is the run itself."""
        if self.repairs:
            return [r.render() for r in self.repairs]
        return [Repair(self.run_id, "ORIGINAL", task_run_ids, self.progress, self.timing.start_time,
                       self.timing.end_time).render()]


def latest_attempts(task_runs: list[TaskRun]) -> list[TaskRun]:
    """Each task's latest attempt, in the order the tasks were first run: what a repaired run's result
    is worked out from. (runs/get lists every attempt in `tasks`, as Databricks does: clients such as
    Airflow's sort them by start time to find the latest.)"""
    latest: dict[str, TaskRun] = {}
    for task in task_runs:
        if task.task_key not in latest or task.run_id > latest[task.task_key].run_id:
            latest[task.task_key] = task
    return list(latest.values())


def page_url(host: str, run_id: int) -> str:
    return f"{host}/runs/{run_id}"


# -- reading what an older store persisted: the rendered API documents -----------------------------

# Keys of a stored RunTask document that the run model keeps elsewhere; every other key is a setting.
_TASK_DOC_KEYS = frozenset({"run_id", "attempt_number", "run_page_url", "cluster_instance", "state", "status",
                            "job_id", "run_duration", *TIMING_FIELDS})


def progress_from_document(doc: dict[str, Any]) -> Progress:
    state = doc.get("state") or {}
    result = state.get("result_state")
    code = ((doc.get("status") or {}).get("termination_details") or {}).get("code")
    known_codes = {c.value for c in TerminationCodeCode}
    return Progress(L(state.get("life_cycle_state", "INTERNAL_ERROR")),
                    R(result) if result else None, str(state.get("state_message", "")),
                    TerminationCodeCode(code) if code in known_codes else None)


def run_from_document(doc: dict[str, Any]) -> Run:
    return Run(int(doc["run_id"]), str(doc.get("run_name", "Untitled")), str(doc.get("run_type", "SUBMIT_RUN")),
               str(doc.get("format", "MULTI_TASK")), str(doc.get("creator_user_name", "local-user")),
               progress_from_document(doc), Timing.from_json(doc), doc.get("job_id"),
               int(doc.get("timeout_seconds") or 0), str(doc.get("trigger", "ONE_TIME")),
               int(doc.get("attempt_number") or 0))


def task_run_from_document(doc: dict[str, Any], parent_run_id: int) -> TaskRun:
    settings = {k: v for k, v in doc.items() if k not in _TASK_DOC_KEYS and not k.startswith("_")}
    cluster = (doc.get("cluster_instance") or {}).get("cluster_id") or f"job-{parent_run_id}"
    return TaskRun(int(doc["run_id"]), parent_run_id, settings, str(cluster), progress_from_document(doc),
                   Timing.from_json(doc), doc.get("job_id"), int(doc.get("attempt_number") or 0))
