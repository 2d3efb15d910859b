"""A run's state from its task runs' states: pure functions, no threads, no I/O.

While tasks run, the run's lifecycle follows the furthest of them forward and never goes back;
once all have ended, the run's result, message and termination code follow from theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState, TerminationCodeCode

from aml_databricks.workspace import lifecycle
from aml_databricks.workspace.runs import Progress, TaskRun

L = RunLifeCycleState
R = RunResultState
FORWARD = (L.QUEUED, L.PENDING, L.RUNNING)


def run_life_cycle(current: RunLifeCycleState, tasks: Sequence[RunLifeCycleState]) -> RunLifeCycleState | None:
    """The run's new lifecycle state while its tasks are live, or None when it stays where it is."""
    if current not in FORWARD:
        return None
    states = [L.QUEUED if s in (L.BLOCKED, L.QUEUED) else s for s in tasks]
    live = [s for s in states if s in FORWARD] + [L.RUNNING for s in states if s == L.TERMINATING]
    if not live:
        return None  # all tasks done: `final_progress` decides
    target = max(live, key=FORWARD.index) if any(s != L.QUEUED for s in live) else L.QUEUED
    if any(s in lifecycle.TERMINAL for s in states) and target != L.QUEUED:
        target = L.RUNNING
    return target if FORWARD.index(target) > FORWARD.index(current) else None


def final_progress(tasks: Sequence[TaskRun], *, internal_error: str | None, stop: tuple[RunResultState, str] | None,
                   single_task: bool) -> Progress:
    """How a run ended, from how its (all ended) task runs ended and why it was stopped, if it was."""
    if internal_error is not None:
        return Progress(L.INTERNAL_ERROR, None, internal_error)
    failed = [t.progress for t in tasks if t.progress.life_cycle == L.INTERNAL_ERROR]
    if failed:
        return Progress(L.INTERNAL_ERROR, None, failed[0].message, failed[0].code)
    if stop is not None:
        return Progress(L.TERMINATED, stop[0], stop[1])
    result = lifecycle.overall_result(t.progress.result for t in tasks)
    code: TerminationCodeCode | None = None
    if result == R.FAILED and single_task:
        code = tasks[0].progress.code
    return Progress(L.TERMINATED, result, _summary(tasks, result), code)


def _summary(tasks: Sequence[TaskRun], result: RunResultState) -> str:
    if result == R.SUCCESS:
        return ""
    if len(tasks) == 1:
        return tasks[0].progress.message
    failed = [t.task_key for t in tasks if t.progress.result in (R.FAILED, R.TIMEDOUT)]
    return f"Task {', '.join(failed)} failed." if failed else ""
