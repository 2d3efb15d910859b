"""The scheduler against a hand-moved clock and an executor the test finishes: timeouts, durations, slots,
cancel and idempotency, with a real SQLite store and no sleeping."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState, TerminationCodeCode

from aml_databricks.compute.executor import TaskLaunch, TaskOutcome
from aml_databricks.compute.protocol import FileSystem
from aml_databricks.workspace import aggregate
from aml_databricks.workspace.payload import normalize_run
from aml_databricks.workspace.runs import Run, TaskRun
from aml_databricks.workspace.scheduler import RESTART_MESSAGE, Scheduler
from aml_databricks.workspace.store import Store

L = RunLifeCycleState
R = RunResultState
START = 1_700_000_000_000
WAIT = 10.0  # seconds a test waits for a thread to hand something over before it fails


class ManualTimer:
    def __init__(self, due: int, action: Callable[[], None]) -> None:
        self.due, self.action, self.cancelled, self.fired = due, action, False, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time moves only when the test says; timers fire on the test's thread as it moves."""

    def __init__(self) -> None:
        self.now = START
        self.timers: list[ManualTimer] = []
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self.now

    def call_later(self, seconds: float, action: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(self.now + int(seconds * 1000), action)
        with self._lock:
            self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)
        with self._lock:
            due = [t for t in self.timers if not t.cancelled and not t.fired and t.due <= self.now]
        for timer in due:
            timer.fired = True
            timer.action()


class FakeExecution:
    def __init__(self) -> None:
        self.ended = threading.Event()
        self.cancelled = threading.Event()
        self.outcome: TaskOutcome | None = None

    def wait(self, timeout: float | None = None) -> TaskOutcome | None:
        self.ended.wait(timeout)
        return self.outcome

    def cancel(self) -> None:
        self.cancelled.set()
        self.finish(R.CANCELED)

    def finish(self, result: RunResultState, message: str = "") -> None:
        if not self.ended.is_set():
            code = TerminationCodeCode.SUCCESS if result == R.SUCCESS else TerminationCodeCode.RUN_EXECUTION_ERROR
            self.outcome = TaskOutcome(result, code, message, notebook_result="done")
            self.ended.set()


@dataclass
class Started:
    launch: TaskLaunch
    execution: FakeExecution
    on_running: Callable[[], None]


class FakeExecutor:
    def __init__(self) -> None:
        self.started: queue.Queue[Started] = queue.Queue()

    def start(self, launch: TaskLaunch, on_running: Callable[[], None]) -> FakeExecution:
        execution = FakeExecution()
        self.started.put(Started(launch, execution, on_running))
        return execution

    def next(self) -> Started:
        return self.started.get(timeout=WAIT)

    def close(self) -> None:
        pass


@dataclass
class Harness:
    scheduler: Scheduler
    store: Store
    clock: ManualClock
    executor: FakeExecutor

    def submit(self, **extra: Any) -> int:
        task = {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": "/Users/me/nb"},
                **extra.pop("task", {})}
        run_id, _ = self.scheduler.submit(normalize_run({"run_name": "r", "tasks": [task], **extra}))
        return run_id

    def finished(self, run_id: int) -> tuple[Run, list[TaskRun]]:
        assert self.scheduler.wait_idle(WAIT)
        run = self.store.get_run(run_id)
        assert isinstance(run, Run)
        return run, self.store.task_runs(run_id)


def file_system(data_dir: Path) -> Callable[[], dict[str, Any]]:
    return lambda: FileSystem.of_data_dir(data_dir).to_json()


def harness_for(tmp_path: Path, slots: int = 4) -> Iterator[Harness]:
    store = Store(tmp_path / "workspace.db")
    clock, executor = ManualClock(), FakeExecutor()
    scheduler = Scheduler(store, executor, runs_dir=tmp_path / "runs", resolve_source=lambda task: ("", "PYTHON"),
                          fs_table=file_system(tmp_path), max_concurrent_tasks=slots, clock=clock)
    yield Harness(scheduler, store, clock, executor)
    scheduler.close(WAIT)
    store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield from harness_for(tmp_path)


@pytest.fixture
def one_slot(tmp_path: Path) -> Iterator[Harness]:
    yield from harness_for(tmp_path, slots=1)


def test_durations_come_from_the_clock(harness: Harness) -> None:
    run_id = harness.submit()
    started = harness.executor.next()
    harness.clock.advance(2)
    started.on_running()
    harness.clock.advance(5)
    started.execution.finish(R.SUCCESS)
    run, (task,) = harness.finished(run_id)
    assert task.timing.setup_duration == 2000
    assert task.timing.execution_duration == 5000
    assert run.timing.run_duration == 7000
    assert run.progress.result == R.SUCCESS and task.progress.result == R.SUCCESS


def test_run_timeout_fires_when_the_clock_reaches_it(harness: Harness) -> None:
    run_id = harness.submit(timeout_seconds=3600)
    started = harness.executor.next()
    started.on_running()
    harness.clock.advance(3599)
    assert not started.execution.cancelled.is_set()
    harness.clock.advance(1)
    assert started.execution.cancelled.is_set()
    run, (task,) = harness.finished(run_id)
    assert (run.progress.life_cycle, run.progress.result) == (L.TERMINATED, R.TIMEDOUT)
    assert run.progress.message == "Run timed out after 3600 seconds."
    assert task.progress.result == R.TIMEDOUT
    assert run.render("")["state"]["user_cancelled_or_timedout"] is True


def test_task_timeout_times_out_the_task_and_the_run(harness: Harness) -> None:
    run_id = harness.submit(task={"timeout_seconds": 60})
    started = harness.executor.next()
    started.on_running()
    harness.clock.advance(60)
    run, (task,) = harness.finished(run_id)
    assert started.execution.cancelled.is_set()
    assert task.progress.result == R.TIMEDOUT
    assert task.progress.message == "Task timed out after 60 seconds."
    assert run.progress.result == R.TIMEDOUT


def test_a_timeout_after_the_outcome_changes_nothing(harness: Harness) -> None:
    run_id = harness.submit(timeout_seconds=10, task={"timeout_seconds": 10})
    started = harness.executor.next()
    started.execution.finish(R.SUCCESS)
    run, _ = harness.finished(run_id)
    harness.clock.advance(3600)  # the timers were cancelled; were one to fire, nothing may change
    assert harness.store.get_run(run_id) == run
    assert run.progress.result == R.SUCCESS


def test_cancel_frees_a_run_waiting_for_a_slot_without_starting_it(one_slot: Harness) -> None:
    first = one_slot.submit()
    running = one_slot.executor.next()  # holds the only slot
    second = one_slot.submit()
    assert one_slot.scheduler.cancel(second)
    assert one_slot.scheduler.wait_idle(WAIT, run_id=second)  # while the first still holds the slot
    record = one_slot.store.get_run(second)
    assert record is not None and record.progress.result == R.CANCELED
    assert one_slot.executor.started.empty()
    running.execution.finish(R.SUCCESS)
    assert one_slot.finished(first)[0].progress.result == R.SUCCESS


def test_one_idempotency_token_one_run_one_execution(harness: Harness) -> None:
    spec = normalize_run({"run_name": "once", "idempotency_token": "tok-1", "tasks": [
        {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": "/Users/me/nb"}}]})
    first, created = harness.scheduler.submit(spec)
    again, created_again = harness.scheduler.submit(spec)
    assert (again, created, created_again) == (first, True, False)
    harness.executor.next().execution.finish(R.SUCCESS)
    harness.finished(first)
    assert harness.executor.started.empty()


def test_recover_ends_what_a_crash_left_in_flight(harness: Harness, tmp_path: Path) -> None:
    run_id = harness.submit()
    started = harness.executor.next()
    started.on_running()
    # the next server on the same data dir, while this one is as good as dead
    store = Store(tmp_path / "workspace.db")
    revived = Scheduler(store, FakeExecutor(), runs_dir=tmp_path / "runs",
                        resolve_source=lambda task: ("", "PYTHON"), fs_table=file_system(tmp_path), clock=harness.clock)
    assert revived.recover() == 1
    run, task = store.get_run(run_id), store.task_runs(run_id)[0]
    assert isinstance(run, Run) and run.progress.life_cycle == L.INTERNAL_ERROR
    assert run.progress.message == task.progress.message == RESTART_MESSAGE
    assert run.timing.end_time == harness.clock.now
    store.close()
    started.execution.finish(R.SUCCESS)


@pytest.mark.parametrize(("current", "tasks", "expected"), [
    (L.QUEUED, [L.BLOCKED, L.QUEUED], None),
    (L.QUEUED, [L.PENDING, L.BLOCKED], L.PENDING),
    (L.PENDING, [L.RUNNING, L.QUEUED], L.RUNNING),
    (L.RUNNING, [L.PENDING, L.TERMINATED], None),  # never backwards
    (L.QUEUED, [L.TERMINATED, L.PENDING], L.RUNNING),  # some done, some live: the run is running
    (L.QUEUED, [L.TERMINATING], L.RUNNING),
    (L.RUNNING, [L.TERMINATED, L.SKIPPED], None),  # all done: the finish decides
])
def test_a_run_follows_its_tasks_forward(current: RunLifeCycleState, tasks: list[RunLifeCycleState],
                                         expected: RunLifeCycleState | None) -> None:
    assert aggregate.run_life_cycle(current, tasks) == expected
