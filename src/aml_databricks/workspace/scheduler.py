"""Runs submitted work through its lifecycle: queue, compute, execute, finish, persist.

One thread per run drives its tasks in dependency order, one thread per task run waits on its
execution. Threads, not asyncio: a task spends its life blocked on a subprocess, and the HTTP
handlers only read what these threads persist. The scheduler changes typed records (runs.py)
and persists them; the API renders them on read. Its parts live beside it: the lifecycle rules
(lifecycle.py), a run's state from its tasks' (aggregate.py), what only a run in flight has
(flight.py), run tokens (tokens.py), concurrency slots (slots.py), time and timeouts (clock.py),
ending what a crashed server left in flight (recovery.py), and what a repair re-runs (repair.py).
A little over 400 lines: what is left here is the one state machine of a run in flight, whose
threads share its locks and flags, and splitting it would spread that locking over modules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from databricks.sdk.service.jobs import RunIf, RunLifeCycleState, RunResultState, TerminationCodeCode

from aml_databricks.compute.executor import Executor, TaskLaunch, TaskOutcome
from aml_databricks.compute.protocol import FileSystem
from aml_databricks.workspace import aggregate, lifecycle, recovery, repair
from aml_databricks.workspace.clock import Clock, SystemClock, Timer
from aml_databricks.workspace.errors import InvalidState, SourceNotFound
from aml_databricks.workspace.flight import RunFlight, TaskFlight
from aml_databricks.workspace.launch import task_spec
from aml_databricks.workspace.recovery import RESTART_MESSAGE
from aml_databricks.workspace.runs import Progress, Run, TaskRun, Timing
from aml_databricks.workspace.slots import TaskSlots
from aml_databricks.workspace.store import Store
from aml_databricks.workspace.tokens import RunTokens, TaskContext

__all__ = ["RESTART_MESSAGE", "Scheduler", "SourceNotFound", "TaskContext"]

L = RunLifeCycleState
R = RunResultState
log = logging.getLogger(__name__)

SHUTDOWN_MESSAGE = "The local workspace stopped while this run was in flight."
POLL_SECONDS = 0.05

# (source text, language) of a task's notebook or python file, or an error message.
SourceResolver = Callable[[dict[str, Any]], tuple[str, str | None]]


class Scheduler:
    def __init__(self, store: Store, executor: Executor, *, runs_dir: Path, resolve_source: SourceResolver,
                 fs_table: Callable[[], dict[str, Any]], max_concurrent_tasks: int = 4,
                 clock: Clock | None = None) -> None:
        self.store = store
        self.fs_table = fs_table
        self.executor = executor
        self.runs_dir = runs_dir
        self.resolve_source = resolve_source
        self.clock: Clock = clock or SystemClock()
        self.host = ""  # set once the server knows its port
        self.tokens = RunTokens()
        self._slots = TaskSlots(max_concurrent_tasks)
        self._runs: dict[int, RunFlight] = {}
        self._task_parent: dict[int, int] = {}
        self._lock = threading.Lock()
        self._threads: dict[int, threading.Thread] = {}  # each run's driving thread, by run id
        self._submit_lock = threading.Lock()

    # -- start-up and shut-down -----------------------------------------------------------

    def recover(self) -> int:
        """End every run the previous server left in flight; returns how many."""
        return recovery.end_unfinished_runs(self.store, self.runs_dir, self.clock.now_ms())

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self._stop(run, None, SHUTDOWN_MESSAGE)
        self.wait_idle(timeout)

    def wait_idle(self, timeout: float, run_id: int | None = None) -> bool:
        """Wait until every run in flight (or only `run_id`) has ended and been persisted; False if not."""
        deadline = time.monotonic() + timeout  # real time: waiting is not the scheduler's clock
        threads = [t for i, t in list(self._threads.items()) if run_id in (None, i)]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    # -- the API's verbs ------------------------------------------------------------------

    def submit(self, spec: dict[str, Any], *, job_id: int | None = None, run_type: str = "SUBMIT_RUN",
               creator: str = "local-user", skip_reason: str | None = None,
               nested: bool = False) -> tuple[int, bool]:
        """Create and start a run; with an idempotency token already used, return that run instead.

        A `nested` run (`dbutils.notebook.run` from a run in flight) takes no task slot: on Databricks it
        runs on its parent's cluster, and waiting for a slot its own ancestors hold would deadlock.

        With `skip_reason` the run is recorded as SKIPPED and nothing executes. Returns (run_id, created)."""
        token = spec.get("idempotency_token")
        with self._submit_lock:  # one lock makes "look up the token, else insert" atomic
            if token is not None:
                existing = self.store.run_by_token(token)
                if existing is not None:
                    return existing, False
            run = self._create(spec, job_id=job_id, run_type=run_type, creator=creator)
        run.nested = nested
        if skip_reason is not None:
            self._skip(run, skip_reason)
            return run.record.run_id, True
        self._start(run)
        return run.record.run_id, True

    def repair(self, record: Run, attempts: list[TaskRun], rerun: dict[str, dict[str, Any]]) -> int:
        """Run the `rerun` tasks of an ended run again, inside that run (repair.py); returns the repair id."""
        with self._submit_lock:
            if self.is_live(record.run_id):
                raise InvalidState(f"Run {record.run_id} is still active: it can be repaired once it has ended.")
            repair_id, flights = repair.start_repair(self.store, record, attempts, rerun, self.clock.now_ms())
            run = RunFlight(record, {}, flights)
            with self._lock:
                self._runs[record.run_id] = run
                for flight in flights.values():
                    self._task_parent[flight.record.run_id] = record.run_id
        self._start(run)
        return repair_id

    def _start(self, run: RunFlight) -> None:
        thread = threading.Thread(target=self._drive, args=(run,), name=f"run-{run.record.run_id}", daemon=True)
        self._threads = {i: t for i, t in self._threads.items() if t.is_alive()}
        self._threads[run.record.run_id] = thread
        thread.start()

    def cancel(self, run_id: int) -> bool:
        """Ask a run (or the run a task run belongs to) to stop; False when it is not in flight."""
        run = self._flight(run_id)
        if run is None:
            return False
        self._stop(run, R.CANCELED, "Run cancelled.")
        return True

    def fail(self, run_id: int, message: str) -> bool:
        """End a run in INTERNAL_ERROR (fault injection and tests of clients)."""
        run = self._flight(run_id)
        if run is None:
            return False
        self._stop(run, None, message)
        return True

    def task_for_token(self, token: str) -> TaskContext | None:
        return self.tokens.lookup(token)

    def is_live(self, run_id: int) -> bool:
        return self._flight(run_id) is not None

    def _flight(self, run_id: int) -> RunFlight | None:
        with self._lock:
            return self._runs.get(self._task_parent.get(run_id, run_id))

    # -- building a run -------------------------------------------------------------------

    def _create(self, spec: dict[str, Any], *, job_id: int | None, run_type: str, creator: str) -> RunFlight:
        tasks = spec["tasks"]
        created = self.clock.now_ms()
        with self.store.transaction() as db:
            run_id, *task_ids = self.store.next_run_ids(db, 1 + len(tasks))
            record = Run(run_id, spec["run_name"], run_type, spec["format"], creator, Progress(L.QUEUED),
                         Timing(start_time=created), job_id, spec.get("timeout_seconds") or 0)
            self.store.insert_run(db, record, idempotency_token=spec.get("idempotency_token"))
            flights: dict[str, TaskFlight] = {}
            for task_id, settings in zip(task_ids, tasks, strict=True):
                task = TaskRun(task_id, run_id, settings, settings.get("existing_cluster_id") or f"job-{run_id}",
                               Progress(L.BLOCKED if settings.get("depends_on") else L.QUEUED),
                               Timing(start_time=created), job_id)
                self.store.insert_run(db, task)
                flights[settings["task_key"]] = TaskFlight(task)
        run = RunFlight(record, spec, flights)
        with self._lock:
            self._runs[run_id] = run
            for flight in flights.values():
                self._task_parent[flight.record.run_id] = run_id
        return run

    def _skip(self, run: RunFlight, reason: str) -> None:
        with run.lock:
            for task in run.tasks.values():
                self._end_task(run, task, L.SKIPPED, None, reason)
            run.record.progress = Progress(L.SKIPPED, None, reason)
            run.record.timing.end_time = self.clock.now_ms()
            self.store.save_run(run.record)
        self._forget(run)

    def _forget(self, run: RunFlight) -> None:
        with self._lock:
            self._runs.pop(run.record.run_id, None)
            for task in run.tasks.values():
                self._task_parent.pop(task.record.run_id, None)

    # -- driving a run --------------------------------------------------------------------

    def _drive(self, run: RunFlight) -> None:
        timer: Timer | None = None
        try:
            timeout = run.record.timeout_seconds
            if timeout:
                timer = self.clock.call_later(timeout, lambda: self._stop(
                    run, R.TIMEDOUT, f"Run timed out after {timeout} seconds."))
            workers = [threading.Thread(target=self._drive_task, args=(run, t), daemon=True,
                                        name=f"task-{t.record.run_id}") for t in run.tasks.values()
                       if not t.done.is_set()]  # a repair leaves the tasks it does not re-run as they ended
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if timer is not None:
                timer.cancel()  # before the result is decided: a late timeout must not change it
            self._finish_run(run)
        except Exception as exc:  # a bug here must still end the run, not leave it hanging
            log.exception("run %s failed inside the scheduler", run.record.run_id)
            run.internal_error = f"Local workspace error: {exc}"
            self._finish_run(run)
        finally:
            if timer is not None:
                timer.cancel()
            self._forget(run)

    def _drive_task(self, run: RunFlight, task: TaskFlight) -> None:
        upstream = [run.tasks[d["task_key"]] for d in task.settings.get("depends_on", [])]
        for dep in upstream:
            dep.done.wait()
        try:
            if run.stopping:
                self._end_task(run, task, L.TERMINATED, run.stop_reason or R.CANCELED, run.stop_message)
                return
            results = [dep.record.progress.result for dep in upstream]
            run_if = RunIf(task.settings.get("run_if", "ALL_SUCCESS"))
            if upstream and not lifecycle.run_if_holds(run_if, results):
                result = lifecycle.skipped_result(results)
                self._end_task(run, task, L.SKIPPED, result,
                               f"Skipped: run_if {run_if.value} does not hold for its upstream tasks.")
                return
            task.record.timing.start_time = self.clock.now_ms()
            self._set_task(run, task, L.QUEUED)
            self._execute(run, task)
        except Exception as exc:
            log.exception("task run %s failed inside the scheduler", task.record.run_id)
            self._end_task(run, task, L.INTERNAL_ERROR, None, f"Local workspace error: {exc}")
        finally:
            task.done.set()

    def _execute(self, run: RunFlight, task: TaskFlight) -> None:
        queued_at = self.clock.now_ms()
        if not run.nested and not self._slots.acquire(give_up=lambda: run.stopping):
            self._end_task(run, task, L.TERMINATED, run.stop_reason or R.CANCELED, run.stop_message)
            return
        try:
            task.record.timing.queue_duration = self.clock.now_ms() - queued_at
            self._set_task(run, task, L.PENDING)
            pending_at = self.clock.now_ms()
            try:
                source, language = self.resolve_source(task.settings)
            except SourceNotFound as exc:
                self._end_task(run, task, L.INTERNAL_ERROR, None, str(exc),
                               code=TerminationCodeCode.RESOURCE_NOT_FOUND)
                return
            token = self.tokens.issue(TaskContext(run.record.run_id, task.record.run_id, task.settings["task_key"]))
            try:
                outcome = self._run_execution(run, task, token, source, language, pending_at)
            finally:
                self.tokens.revoke(token)
            cleanup_from = self.clock.now_ms()
            self._set_task(run, task, L.TERMINATING)
            task.record.timing.cleanup_duration = self.clock.now_ms() - cleanup_from
            self._record_outcome(run, task, outcome)
        finally:
            if not run.nested:
                self._slots.release()

    def _run_execution(self, run: RunFlight, task: TaskFlight, token: str, source: str, language: str | None,
                       pending_at: int) -> TaskOutcome:
        run_dir = self.runs_dir / str(task.record.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        launch = TaskLaunch(
            run_id=task.record.run_id, parent_run_id=run.record.run_id,
            task=task_spec(task.settings, source, language),
            run_dir=run_dir, api_host=self.host, run_token=token, fs=FileSystem.from_json(self.fs_table()),
        )
        running_at: list[int] = []

        def on_running() -> None:
            running_at.append(self.clock.now_ms())
            task.record.timing.setup_duration = running_at[0] - pending_at
            self._set_task(run, task, L.RUNNING)

        task.execution = self.executor.start(launch, on_running)
        outcome = self._await(run, task)
        started = running_at[0] if running_at else self.clock.now_ms()
        task.record.timing.execution_duration = self.clock.now_ms() - started
        return outcome

    def _await(self, run: RunFlight, task: TaskFlight) -> TaskOutcome:
        """Wait for the execution's outcome, stopping it when the task times out or the run stops."""
        assert task.execution is not None
        timeout = task.settings.get("timeout_seconds") or 0
        task.awaiting = True
        timer = self.clock.call_later(timeout, lambda: self._time_out_task(run, task, timeout)) if timeout else None
        try:
            while True:
                outcome = task.execution.wait(POLL_SECONDS)
                if outcome is not None:
                    with run.lock:
                        task.awaiting = False
                    return outcome
                if task.stop is None and run.stopping:
                    self._stop_task(run, task, run.stop_reason or R.CANCELED, run.stop_message)
        finally:
            task.awaiting = False
            if timer is not None:
                timer.cancel()

    def _time_out_task(self, run: RunFlight, task: TaskFlight, timeout: int) -> None:
        with run.lock:
            if not task.awaiting:
                return  # the outcome came first
            run.stop_reason = run.stop_reason or R.TIMEDOUT  # a task timing out stops the whole run
        self._slots.wake()
        self._stop_task(run, task, R.TIMEDOUT, f"Task timed out after {timeout} seconds.")

    def _stop_task(self, run: RunFlight, task: TaskFlight, reason: RunResultState, message: str) -> None:
        with run.lock:
            if task.stop is not None or task.done.is_set():
                return
            task.stop = (reason, message)
            if task.record.progress.life_cycle in (L.PENDING, L.RUNNING):
                self._set_task(run, task, L.TERMINATING, message)
        if task.execution is not None:
            task.execution.cancel()

    def _record_outcome(self, run: RunFlight, task: TaskFlight, outcome: TaskOutcome) -> None:
        output: dict[str, Any] = {}
        if "notebook_task" in task.settings:
            output["notebook_output"] = (
                {"result": outcome.notebook_result, "truncated": outcome.truncated}
                if outcome.notebook_result is not None else {}
            )
        for name in ("error", "error_trace", "logs"):
            if getattr(outcome, name) is not None:
                output[name] = getattr(outcome, name)
        if outcome.logs is not None:
            output["logs_truncated"] = outcome.logs_truncated
        self.store.save_output(task.record.run_id, output)
        if run.internal_error is not None:
            self._end_task(run, task, L.INTERNAL_ERROR, None, run.internal_error)
        elif task.stop is not None:
            self._end_task(run, task, L.TERMINATED, *task.stop)
        else:
            message = outcome.state_message or (outcome.error or "")
            self._end_task(run, task, L.TERMINATED, outcome.result_state, message,
                           code=outcome.termination_code)

    # -- state changes --------------------------------------------------------------------

    def _stop(self, run: RunFlight, reason: RunResultState | None, message: str) -> None:
        """Ask a run to stop: reason CANCELED/TIMEDOUT, or None for an internal error."""
        with run.lock:
            if run.stopping:
                return
            if reason is None:
                run.internal_error = message
            else:
                run.stop_reason, run.stop_message = reason, message
        self._slots.wake()
        for task in run.tasks.values():
            if task.execution is not None and not task.done.is_set():
                self._stop_task(run, task, reason or R.CANCELED, message)

    def _set_task(self, run: RunFlight, task: TaskFlight, state: RunLifeCycleState, message: str = "") -> None:
        with run.lock:
            current = task.record.progress.life_cycle
            if current in lifecycle.TERMINAL or current == state:
                return
            lifecycle.check_transition(current, state)
            task.record.progress = Progress(state, None, message)
            self.store.save_run(task.record)
            self._update_parent(run)

    def _end_task(self, run: RunFlight, task: TaskFlight, state: RunLifeCycleState,
                  result: RunResultState | None, message: str, code: TerminationCodeCode | None = None) -> None:
        with run.lock:
            if task.record.progress.terminal:
                return
            task.record.progress = Progress(state, result, message, code)
            task.record.timing.end_time = self.clock.now_ms()
            self.store.save_run(task.record)
            self._update_parent(run)

    def _update_parent(self, run: RunFlight) -> None:
        """The run's lifecycle follows its tasks forward: never back to an earlier state."""
        target = aggregate.run_life_cycle(run.record.progress.life_cycle,
                                          [t.record.progress.life_cycle for t in run.tasks.values()])
        if target is None:
            return
        run.record.progress = Progress(target)
        timing = run.record.timing
        if target != L.QUEUED and not timing.queue_duration:
            timing.queue_duration = self.clock.now_ms() - timing.start_time
        self.store.save_run(run.record)

    def _finish_run(self, run: RunFlight) -> None:
        with run.lock:
            tasks = list(run.tasks.values())
            for task in tasks:  # a task the scheduler never reached (a bug, or shutdown) still ends
                if not task.record.progress.terminal:
                    self._end_task(run, task, L.INTERNAL_ERROR, None, run.internal_error or SHUTDOWN_MESSAGE)
            stop = (run.stop_reason, run.stop_message) if run.stop_reason is not None else None
            record = run.record
            record.progress = aggregate.final_progress([t.record for t in tasks], internal_error=run.internal_error,
                                                       stop=stop, single_task=record.format == "SINGLE_TASK")
            record.timing.end_time = self.clock.now_ms()
            if record.format == "SINGLE_TASK":  # a single-task run reports its task's durations
                only = tasks[0].record.timing
                record.timing.setup_duration = only.setup_duration
                record.timing.execution_duration = only.execution_duration
                record.timing.cleanup_duration = only.cleanup_duration
            if record.repairs:  # the repair that just ended is the latest entry of the history
                record.repairs[-1].progress = record.progress
                record.repairs[-1].end_time = record.timing.end_time
            self.store.save_run(record)
