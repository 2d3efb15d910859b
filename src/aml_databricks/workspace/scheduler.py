"""Runs submitted work through its lifecycle: queue, compute, execute, finish, persist.

One thread per run drives its tasks in dependency order, one thread per task run waits on its
execution. Threads, not asyncio: a task spends its life blocked on a subprocess, and the HTTP
handlers only read what these threads persist. The lifecycle rules themselves live in
lifecycle.py; this module only applies them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk.service.jobs import RunIf, RunLifeCycleState, RunResultState, TerminationCodeCode

from aml_databricks.compute.executor import Execution, Executor, TaskLaunch, TaskOutcome
from aml_databricks.compute.protocol import FileSystem
from aml_databricks.workspace import lifecycle
from aml_databricks.workspace.errors import SourceNotFound
from aml_databricks.workspace.launch import task_spec
from aml_databricks.workspace.store import Store, now_ms

L = RunLifeCycleState
R = RunResultState
log = logging.getLogger(__name__)

RESTART_MESSAGE = "The local workspace restarted while this run was in flight."
SHUTDOWN_MESSAGE = "The local workspace stopped while this run was in flight."
POLL_SECONDS = 0.05

# (source text, language) of a task's notebook or python file, or an error message.
SourceResolver = Callable[[dict[str, Any]], tuple[str, str | None]]


def end_orphaned_driver(run_dir: Path) -> None:
    """Kill the driver a crashed workspace left behind (its pid file names its process group)."""
    try:
        pid = int((run_dir / "driver.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"aml_databricks.compute.driver" in cmdline and str(run_dir).encode() in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@dataclass
class TaskContext:
    """What a run token grants: acting inside this task run."""

    parent_run_id: int
    run_id: int
    task_key: str


@dataclass
class _TaskRun:
    doc: dict[str, Any]
    settings: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: RunResultState | None = None
    execution: Execution | None = None


class _Run:
    """A run in flight: its document, its task runs, and the flags that stop it."""

    def __init__(self, doc: dict[str, Any], spec: dict[str, Any], tasks: dict[str, _TaskRun]) -> None:
        self.doc = doc
        self.spec = spec
        self.tasks = tasks
        self.lock = threading.RLock()
        self.stop_reason: RunResultState | None = None  # CANCELED or TIMEDOUT once asked to stop
        self.stop_message = ""
        self.stopped = threading.Event()
        self.internal_error: str | None = None


class Scheduler:
    def __init__(self, store: Store, executor: Executor, *, runs_dir: Path, resolve_source: SourceResolver,
                 fs_table: Callable[[], dict[str, Any]] = dict, max_concurrent_tasks: int = 4) -> None:
        self.store = store
        self.fs_table = fs_table
        self.executor = executor
        self.runs_dir = runs_dir
        self.resolve_source = resolve_source
        self.host = ""  # set once the server knows its port
        self._slots = threading.BoundedSemaphore(max_concurrent_tasks)
        self._runs: dict[int, _Run] = {}
        self._task_parent: dict[int, int] = {}
        self._tokens: dict[str, TaskContext] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._submit_lock = threading.Lock()

    # -- start-up and shut-down -----------------------------------------------------------

    def recover(self) -> int:
        """End every run the previous server left in flight; returns how many."""
        count = 0
        for doc in self.store.unfinished_runs(lifecycle.TERMINAL_NAMES):
            end_orphaned_driver(self.runs_dir / str(doc["run_id"]))
            doc["state"], doc["status"] = lifecycle.render_state(L.INTERNAL_ERROR, None, RESTART_MESSAGE)
            doc["end_time"] = doc.get("end_time") or now_ms()
            self.store.save_run(doc)
            count += "task_key" not in doc  # count runs, not their task runs
        return count

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self._stop(run, None, SHUTDOWN_MESSAGE)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- the API's verbs ------------------------------------------------------------------

    def submit(self, spec: dict[str, Any], *, job_id: int | None = None, run_type: str = "SUBMIT_RUN",
               creator: str = "local-user", skip_reason: str | None = None) -> tuple[int, bool]:
        """Create and start a run; with an idempotency token already used, return that run instead.

        With `skip_reason` the run is recorded as SKIPPED and nothing executes. Returns (run_id, created)."""
        token = spec.get("idempotency_token")
        with self._submit_lock:  # one lock makes "look up the token, else insert" atomic
            if token is not None:
                existing = self.store.run_by_token(token)
                if existing is not None:
                    return existing, False
            run = self._create(spec, job_id=job_id, run_type=run_type, creator=creator)
        if skip_reason is not None:
            self._skip(run, skip_reason)
            return int(run.doc["run_id"]), True
        thread = threading.Thread(target=self._drive, args=(run,), name=f"run-{run.doc['run_id']}",
                                  daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()
        return int(run.doc["run_id"]), True

    def cancel(self, run_id: int) -> bool:
        """Ask a run (or the run a task run belongs to) to stop; False when it is not in flight."""
        with self._lock:
            parent = self._task_parent.get(run_id, run_id)
            run = self._runs.get(parent)
        if run is None:
            return False
        self._stop(run, R.CANCELED, "Run cancelled.")
        return True

    def fail(self, run_id: int, message: str) -> bool:
        """End a run in INTERNAL_ERROR (fault injection and tests of clients)."""
        with self._lock:
            run = self._runs.get(self._task_parent.get(run_id, run_id))
        if run is None:
            return False
        self._stop(run, None, message)
        return True

    def task_for_token(self, token: str) -> TaskContext | None:
        with self._lock:
            return self._tokens.get(token)

    def is_live(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._runs or run_id in self._task_parent

    # -- building a run -------------------------------------------------------------------

    def _create(self, spec: dict[str, Any], *, job_id: int | None, run_type: str, creator: str) -> _Run:
        tasks = spec["tasks"]
        created = now_ms()
        with self.store.transaction() as db:
            run_id, *task_ids = self.store.next_run_ids(db, 1 + len(tasks))
            state, status = lifecycle.render_state(L.QUEUED)
            blocked = lifecycle.render_state(L.BLOCKED)
            doc: dict[str, Any] = {
                "run_id": run_id, "number_in_job": run_id, "original_attempt_run_id": run_id,
                "run_name": spec["run_name"], "run_type": run_type, "format": spec["format"],
                "creator_user_name": creator, "run_page_url": self._page(run_id),
                "start_time": created, "end_time": 0, "setup_duration": 0, "execution_duration": 0,
                "cleanup_duration": 0, "run_duration": 0, "queue_duration": 0, "trigger": "ONE_TIME",
                "attempt_number": 0, "state": state, "status": status,
            }
            if job_id is not None:
                doc["job_id"] = job_id
            if spec.get("timeout_seconds"):
                doc["timeout_seconds"] = spec["timeout_seconds"]
            self.store.insert_run(db, doc, parent_run_id=None, idempotency_token=spec.get("idempotency_token"))
            task_runs: dict[str, _TaskRun] = {}
            for task_id, settings in zip(task_ids, tasks, strict=True):
                task_doc = {
                    **settings, "run_id": task_id, "attempt_number": 0, "run_page_url": self._page(task_id),
                    "start_time": created, "end_time": 0, "setup_duration": 0, "execution_duration": 0,
                    "cleanup_duration": 0, "run_duration": 0, "queue_duration": 0,
                    "cluster_instance": {"cluster_id": settings.get("existing_cluster_id") or f"job-{run_id}",
                                         "spark_context_id": str(task_id)},
                    "state": state, "status": status,
                }
                if settings.get("depends_on"):
                    task_doc["state"], task_doc["status"] = blocked
                if job_id is not None:
                    task_doc["job_id"] = job_id
                self.store.insert_run(db, task_doc, parent_run_id=run_id)
                task_runs[settings["task_key"]] = _TaskRun(task_doc, settings)
        run = _Run(doc, spec, task_runs)
        with self._lock:
            self._runs[run_id] = run
            for task in task_runs.values():
                self._task_parent[task.doc["run_id"]] = run_id
        return run

    def _skip(self, run: _Run, reason: str) -> None:
        with run.lock:
            for task in run.tasks.values():
                self._end_task(run, task, L.SKIPPED, None, reason)
            run.doc["state"], run.doc["status"] = lifecycle.render_state(L.SKIPPED, None, reason)
            run.doc["end_time"] = now_ms()
            self.store.save_run(run.doc)
        self._forget(run)

    def _forget(self, run: _Run) -> None:
        with self._lock:
            self._runs.pop(run.doc["run_id"], None)
            for task in run.tasks.values():
                self._task_parent.pop(task.doc["run_id"], None)

    def _page(self, run_id: int) -> str:
        return f"{self.host}/runs/{run_id}"

    # -- driving a run --------------------------------------------------------------------

    def _drive(self, run: _Run) -> None:
        try:
            timeout = run.spec.get("timeout_seconds") or 0
            if timeout:
                timer = threading.Timer(timeout, self._stop, args=(run, R.TIMEDOUT,
                                        f"Run timed out after {timeout} seconds."))
                timer.daemon = True
                timer.start()
            workers = [threading.Thread(target=self._drive_task, args=(run, t), daemon=True,
                                        name=f"task-{t.doc['run_id']}") for t in run.tasks.values()]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if timeout:
                timer.cancel()
            self._finish_run(run)
        except Exception as exc:  # a bug here must still end the run, not leave it hanging
            log.exception("run %s failed inside the scheduler", run.doc["run_id"])
            run.internal_error = f"Local workspace error: {exc}"
            self._finish_run(run)
        finally:
            self._forget(run)

    def _drive_task(self, run: _Run, task: _TaskRun) -> None:
        upstream = [run.tasks[d["task_key"]] for d in task.settings.get("depends_on", [])]
        for dep in upstream:
            dep.done.wait()
        try:
            if run.stop_reason is not None or run.internal_error is not None:
                self._end_task(run, task, L.TERMINATED, run.stop_reason or R.CANCELED, run.stop_message)
                return
            results = [dep.result for dep in upstream]
            run_if = RunIf(task.settings.get("run_if", "ALL_SUCCESS"))
            if upstream and not lifecycle.run_if_holds(run_if, results):
                result = lifecycle.skipped_result(results)
                self._end_task(run, task, L.SKIPPED, result,
                               f"Skipped: run_if {run_if.value} does not hold for its upstream tasks.")
                return
            task.doc["start_time"] = now_ms()
            self._set_task(run, task, L.QUEUED)
            self._execute(run, task)
        except Exception as exc:
            log.exception("task run %s failed inside the scheduler", task.doc["run_id"])
            self._end_task(run, task, L.INTERNAL_ERROR, None, f"Local workspace error: {exc}")
        finally:
            task.done.set()

    def _execute(self, run: _Run, task: _TaskRun) -> None:
        queued_at = now_ms()
        while not self._slots.acquire(timeout=POLL_SECONDS):
            if run.stop_reason is not None or run.internal_error is not None:
                self._end_task(run, task, L.TERMINATED, run.stop_reason or R.CANCELED, run.stop_message)
                return
        try:
            task.doc["queue_duration"] = now_ms() - queued_at
            self._set_task(run, task, L.PENDING)
            pending_at = now_ms()
            try:
                source, language = self.resolve_source(task.settings)
            except SourceNotFound as exc:
                self._end_task(run, task, L.INTERNAL_ERROR, None, str(exc),
                               code=TerminationCodeCode.RESOURCE_NOT_FOUND)
                return
            token = secrets.token_urlsafe(24)
            context = TaskContext(run.doc["run_id"], task.doc["run_id"], task.settings["task_key"])
            with self._lock:
                self._tokens[token] = context
            try:
                outcome = self._run_execution(run, task, token, source, language, pending_at)
            finally:
                with self._lock:
                    self._tokens.pop(token, None)
            cleanup_from = now_ms()
            self._set_task(run, task, L.TERMINATING)
            task.doc["cleanup_duration"] = now_ms() - cleanup_from
            self._record_outcome(run, task, outcome)
        finally:
            self._slots.release()

    def _run_execution(self, run: _Run, task: _TaskRun, token: str, source: str, language: str | None,
                       pending_at: int) -> TaskOutcome:
        run_dir = self.runs_dir / str(task.doc["run_id"])
        run_dir.mkdir(parents=True, exist_ok=True)
        launch = TaskLaunch(
            run_id=task.doc["run_id"], parent_run_id=run.doc["run_id"], task=task_spec(task.settings, source, language),
            run_dir=run_dir, api_host=self.host, run_token=token, fs=FileSystem.from_json(self.fs_table()),
        )
        running_at: list[int] = []

        def on_running() -> None:
            running_at.append(now_ms())
            task.doc["setup_duration"] = running_at[0] - pending_at
            self._set_task(run, task, L.RUNNING)

        task.execution = self.executor.start(launch, on_running)
        timeout = task.settings.get("timeout_seconds") or 0
        deadline = time.monotonic() + timeout if timeout else None
        stopping = False
        while True:
            outcome = task.execution.wait(POLL_SECONDS)
            if outcome is not None:
                break
            if not stopping and deadline is not None and time.monotonic() > deadline:
                run.stop_reason = run.stop_reason or R.TIMEDOUT
                self._stop_task(run, task, R.TIMEDOUT, f"Task timed out after {timeout} seconds.")
                stopping = True
            if not stopping and (run.stop_reason is not None or run.internal_error is not None):
                self._stop_task(run, task, run.stop_reason or R.CANCELED, run.stop_message)
                stopping = True
        started = running_at[0] if running_at else now_ms()
        task.doc["execution_duration"] = now_ms() - started
        return outcome

    def _stop_task(self, run: _Run, task: _TaskRun, reason: RunResultState, message: str) -> None:
        task.doc.setdefault("_stop", (reason.value, message))
        if L(task.doc["state"]["life_cycle_state"]) in (L.PENDING, L.RUNNING):
            self._set_task(run, task, L.TERMINATING, message)
        assert task.execution is not None
        task.execution.cancel()

    def _record_outcome(self, run: _Run, task: _TaskRun, outcome: TaskOutcome) -> None:
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
        self.store.save_output(task.doc["run_id"], output)
        stop = task.doc.pop("_stop", None)
        if run.internal_error is not None:
            self._end_task(run, task, L.INTERNAL_ERROR, None, run.internal_error)
        elif stop is not None:
            self._end_task(run, task, L.TERMINATED, R(stop[0]), stop[1])
        else:
            message = outcome.state_message or (outcome.error or "")
            self._end_task(run, task, L.TERMINATED, outcome.result_state, message,
                           code=outcome.termination_code)

    # -- state changes --------------------------------------------------------------------

    def _stop(self, run: _Run, reason: RunResultState | None, message: str) -> None:
        """Ask a run to stop: reason CANCELED/TIMEDOUT, or None for an internal error."""
        with run.lock:
            if run.stop_reason is not None or run.internal_error is not None:
                return
            if reason is None:
                run.internal_error = message
            else:
                run.stop_reason, run.stop_message = reason, message
            run.stopped.set()
        for task in run.tasks.values():
            if task.execution is not None and not task.done.is_set():
                self._stop_task(run, task, reason or R.CANCELED, message)

    def _set_task(self, run: _Run, task: _TaskRun, state: RunLifeCycleState, message: str = "") -> None:
        with run.lock:
            current = L(task.doc["state"]["life_cycle_state"])
            if current in lifecycle.TERMINAL or current == state:
                return
            lifecycle.check_transition(current, state)
            task.doc["state"], task.doc["status"] = lifecycle.render_state(state, None, message)
            self._save_task(task)
            self._update_parent(run)

    def _end_task(self, run: _Run, task: _TaskRun, state: RunLifeCycleState, result: RunResultState | None,
                  message: str, code: TerminationCodeCode | None = None) -> None:
        with run.lock:
            if L(task.doc["state"]["life_cycle_state"]) in lifecycle.TERMINAL:
                return
            task.result = result
            task.doc["state"], task.doc["status"] = lifecycle.render_state(state, result, message,
                                                                          termination_code=code)
            end = now_ms()
            task.doc["end_time"] = end
            task.doc["run_duration"] = end - task.doc["start_time"]
            self._save_task(task)
            self._update_parent(run)

    def _save_task(self, task: _TaskRun) -> None:
        self.store.save_run({k: v for k, v in task.doc.items() if not k.startswith("_")})

    def _update_parent(self, run: _Run) -> None:
        """The run's lifecycle follows its tasks forward: never back to an earlier state."""
        order = [L.QUEUED, L.PENDING, L.RUNNING]
        current = L(run.doc["state"]["life_cycle_state"])
        if current not in order:
            return
        waiting = (L.BLOCKED, L.QUEUED)
        states = [L.QUEUED if s in waiting else s
                  for s in (L(t.doc["state"]["life_cycle_state"]) for t in run.tasks.values())]
        live = [s for s in states if s in order] + [L.RUNNING for s in states if s == L.TERMINATING]
        if not live:
            return  # all tasks done: _finish_run decides
        target = max(live, key=order.index) if any(s != L.QUEUED for s in live) else L.QUEUED
        if any(s in lifecycle.TERMINAL for s in states) and target != L.QUEUED:
            target = L.RUNNING
        if order.index(target) > order.index(current):
            run.doc["state"], run.doc["status"] = lifecycle.render_state(target)
            if target != L.QUEUED and not run.doc["queue_duration"]:
                run.doc["queue_duration"] = now_ms() - run.doc["start_time"]
            self.store.save_run(run.doc)

    def _finish_run(self, run: _Run) -> None:
        with run.lock:
            tasks = list(run.tasks.values())
            for task in tasks:  # a task the scheduler never reached (a bug, or shutdown) still ends
                if L(task.doc["state"]["life_cycle_state"]) not in lifecycle.TERMINAL:
                    self._end_task(run, task, L.INTERNAL_ERROR, None, run.internal_error or SHUTDOWN_MESSAGE)
            doc = run.doc
            if run.internal_error is not None:
                doc["state"], doc["status"] = lifecycle.render_state(L.INTERNAL_ERROR, None, run.internal_error)
            elif any(L(t.doc["state"]["life_cycle_state"]) == L.INTERNAL_ERROR for t in tasks):
                message = next(t.doc["state"]["state_message"] for t in tasks
                               if L(t.doc["state"]["life_cycle_state"]) == L.INTERNAL_ERROR)
                code = next((t.doc["status"].get("termination_details", {}).get("code") for t in tasks
                             if L(t.doc["state"]["life_cycle_state"]) == L.INTERNAL_ERROR), None)
                doc["state"], doc["status"] = lifecycle.render_state(
                    L.INTERNAL_ERROR, None, message, termination_code=TerminationCodeCode(code) if code else None)
            else:
                result = run.stop_reason or lifecycle.overall_result(t.result for t in tasks)
                message = run.stop_message if run.stop_reason else self._summary(tasks, result)
                code = None
                if result == R.FAILED and len(tasks) == 1:
                    code_name = tasks[0].doc["status"].get("termination_details", {}).get("code")
                    code = TerminationCodeCode(code_name) if code_name else None
                doc["state"], doc["status"] = lifecycle.render_state(L.TERMINATED, result, message,
                                                                     termination_code=code)
            end = now_ms()
            doc["end_time"] = end
            doc["run_duration"] = end - doc["start_time"]
            if run.spec["format"] == "SINGLE_TASK":  # a single-task run reports its task's durations
                only = tasks[0].doc
                for name in ("setup_duration", "execution_duration", "cleanup_duration"):
                    doc[name] = only[name]
            self.store.save_run(doc)

    @staticmethod
    def _summary(tasks: list[_TaskRun], result: RunResultState) -> str:
        if result == R.SUCCESS:
            return ""
        failed = [t.settings["task_key"] for t in tasks if t.result in (R.FAILED, R.TIMEDOUT)]
        if len(tasks) == 1:
            return str(tasks[0].doc["state"].get("state_message", ""))
        return f"Task {', '.join(failed)} failed." if failed else ""
