"""Repairing a run (runs/repair): which of its tasks run again, and the records of that new attempt.

A repair re-runs some tasks of an ended run inside the same run: each one gets a new task run
(a new run id, its attempt number one higher), the tasks left alone keep their last attempt and its
result, and the run records the repair in its history (the original attempt first, then each repair).
Choosing the tasks is a pure function; building the records happens in one store transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState

from aml_databricks.workspace.errors import InvalidParameterValue
from aml_databricks.workspace.flight import TaskFlight
from aml_databricks.workspace.runs import Progress, Repair, Run, TaskRun, Timing
from aml_databricks.workspace.store import Store

L = RunLifeCycleState
R = RunResultState
# Results a repair leaves alone with rerun_all_failed_tasks: the task did what it was asked, or was
# left out on purpose by its run_if.
NOT_FAILED = (R.SUCCESS, R.EXCLUDED)


def check_latest_repair_id(run: Run, latest_repair_id: int | None) -> None:
    """Repairs are sequential: after the first one, each must name the latest (Databricks' rule)."""
    latest = run.latest_repair_id
    if latest is None and latest_repair_id is not None:
        raise InvalidParameterValue(f"Run {run.run_id} has never been repaired: leave latest_repair_id out.")
    if latest is not None and latest_repair_id != latest:
        raise InvalidParameterValue(
            f"latest_repair_id must be {latest}, the latest repair of run {run.run_id}, "
            f"got {latest_repair_id}.")


def tasks_to_rerun(attempts: list[TaskRun], *, rerun_tasks: Iterable[str] | None, all_failed: bool,
                   dependents: bool) -> list[str]:
    """The task keys a repair runs again, in the run's task order."""
    keys = [t.task_key for t in attempts]
    if bool(rerun_tasks) == all_failed:
        raise InvalidParameterValue("Set exactly one of rerun_tasks and rerun_all_failed_tasks.")
    if all_failed:
        chosen = {t.task_key for t in attempts if not _succeeded(t)}
    else:
        chosen = set(rerun_tasks or ())
        unknown = sorted(chosen - set(keys))
        if unknown:
            raise InvalidParameterValue(f"Task {unknown[0]} is not a task of this run.")
    if dependents:
        chosen |= _downstream(attempts, chosen)
    if not chosen:
        raise InvalidParameterValue("The run has no failed tasks to repair.")
    return [k for k in keys if k in chosen]


def _succeeded(task: TaskRun) -> bool:
    return task.progress.life_cycle in (L.TERMINATED, L.SKIPPED) and task.progress.result in NOT_FAILED


def _downstream(attempts: list[TaskRun], chosen: set[str]) -> set[str]:
    below: set[str] = set()
    grew = True
    while grew:
        grew = False
        for task in attempts:
            upstream = {d["task_key"] for d in task.settings.get("depends_on", [])}
            if task.task_key not in below | chosen and upstream & (below | chosen):
                below.add(task.task_key)
                grew = True
    return below


def start_repair(store: Store, run: Run, attempts: list[TaskRun], rerun: dict[str, dict[str, object]],
                 now: int) -> tuple[int, dict[str, TaskFlight]]:
    """Persist a repair of `run`: new task runs for the `rerun` task keys (with those settings), the run
    back to RUNNING with the repair in its history. Returns the repair id and the run's task flights
    (the ones left alone already done)."""
    with store.transaction() as db:
        repair_id, *task_ids = store.next_run_ids(db, 1 + len(rerun))
        if not run.repairs:
            run.repairs.append(Repair(run.run_id, "ORIGINAL", [t.run_id for t in attempts], run.progress,
                                      run.timing.start_time, run.timing.end_time))
        flights: dict[str, TaskFlight] = {}
        new_ids = iter(task_ids)
        for old in attempts:
            settings = rerun.get(old.task_key)
            if settings is None:
                flight = TaskFlight(old)
                flight.done.set()
            else:
                state = L.BLOCKED if settings.get("depends_on") else L.QUEUED
                task = TaskRun(next(new_ids), run.run_id, dict(settings), old.cluster_id, Progress(state),
                               Timing(start_time=now), old.job_id, old.attempt_number + 1)
                store.insert_run(db, task)
                flight = TaskFlight(task)
            flights[old.task_key] = flight
        run.repairs.append(Repair(repair_id, "REPAIR", [f.record.run_id for f in flights.values()
                                                        if not f.done.is_set()], Progress(L.RUNNING), now))
        run.progress = Progress(L.RUNNING)
        run.timing.end_time = 0
        store.save_run(run)
    return repair_id, flights
