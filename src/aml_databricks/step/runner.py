"""The step: submit (idempotent) → wait → (stop? cancel, wait for terminal) → outputs → result.

    run_step(settings, env, reporter, stop)          the whole step, used by the CLI
      context_from_env / build_submit_request        what to run
      resolve_credentials → connect                  whom to ask (preflight: host reachable)
      submit → reattached?                           a retried step finds its run by the token
      wait_until_terminal                            own loop, interruptible by `stop`
      cancel + bounded wait                          on SIGTERM/SIGINT and on --timeout
      task outputs                                   exit value, or error + error_trace per failed task
      run.json, MLflow tags, --require-output        what the next pipeline step gets

Every failure surfaces as an `AmlDatabricksError` with one line and an exit code (errors.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from aml_databricks.errors import AmlDatabricksError, AuthError, RunFailedError, StoppedError, UsageError
from aml_databricks.step.auth import AzureFactories, Credentials, resolve_credentials
from aml_databricks.step.azureml import (
    MLFLOW_TOKEN,
    AzureMLContext,
    context_from_env,
    datastore_of,
    output_uri,
)
from aml_databricks.step.report import Reporter
from aml_databricks.step.request import (
    SubmitRequest,
    build_submit_request,
    masked,
    submission_id_of,
)
from aml_databricks.step.settings import Settings
from aml_databricks.step.wait import (
    Clock,
    EndReason,
    PollPolicy,
    RealClock,
    RunObservation,
    StateLog,
    wait_until_terminal,
)

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

RESULT_DIR = "_databricks"  # leading underscore: Spark and pyarrow skip it when reading the folder
RESULT_FILE = "run.json"
DEFAULT_MOUNT_POINT = "/mnt/azuremlblobstore"  # where the demo mounts the Azure ML blob store
# A reattached run started before our submit; a fresh one at or after it. Allow this much clock
# difference between this machine and the workspace (only used when the submission id is missing).
_CLOCK_SKEW_MS = 2000
STOP_CHECK_S = 0.05  # how often an API call stuck in the SDK's retries looks at the stop signal
ResultT = TypeVar("ResultT")
_SUBMISSION_SEARCH_PAGES = 4  # active runs looked through (25 a page) for one an abandoned submit started
_MLFLOW_TAG_LIMIT = 5000  # MLflow caps tag values; the full exit value is in run.json


@dataclass
class StopRequest:
    """Set from a signal handler; nothing else happens there (no I/O inside a handler)."""

    event: threading.Event = field(default_factory=threading.Event)
    exit_code: int = 143
    signal_name: str = "SIGTERM"

    def request(self, exit_code: int, signal_name: str) -> None:
        if not self.event.is_set():
            self.exit_code, self.signal_name = exit_code, signal_name
        self.event.set()


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


def run_step(
    settings: Settings,
    *,
    env: Mapping[str, str],
    reporter: Reporter,
    stop: StopRequest | None = None,
    clock: Clock | None = None,
    factories: AzureFactories | None = None,
    client: WorkspaceClient | None = None,
) -> StepResult:
    """The whole step. Returns the result for exit code 0/1; raises for 2/3/130/143."""
    stop = stop or StopRequest()
    ctx = context_from_env(settings, env)
    reporter.mask.add(ctx.mlflow.get(MLFLOW_TOKEN))
    _notices(settings, ctx, reporter)
    request = build_submit_request(settings, ctx, submission_id=uuid.uuid4().hex[:16])
    if settings.dry_run:
        reporter.document(masked(request.as_dict()))
        return StepResult(azureml_run_id=ctx.run_id, message="dry run: nothing submitted")
    assert settings.host is not None  # validated: required unless --dry-run
    if client is None:
        credentials = resolve_credentials(settings, env, factories)
        reporter.mask.add(*credentials.secret_values)
        reporter.info(f"credential: {credentials.kind}")
        client = connect(settings, credentials, stop.event)
    runner = _StepRun(settings, ctx, request, client, reporter, stop, clock or RealClock())
    return runner.run()


def connect(settings: Settings, credentials: Credentials, stop: threading.Event | None = None) -> WorkspaceClient:
    """A client with our retry budget. The host is probed first: the SDK would otherwise retry an
    unreachable host for the whole budget before saying anything."""
    assert settings.host is not None
    _probe(settings.host, settings.connect_timeout, stop or threading.Event())
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    try:
        config = Config(
            host=settings.host,
            retry_timeout_seconds=int(max(1, settings.retry_budget)),
            http_timeout_seconds=60,
            **credentials.config_kwargs(),
        )
    except ValueError as exc:
        raise AuthError(f"could not configure the Databricks client ({credentials.kind}): {exc}") from None
    return WorkspaceClient(config=config)


def _probe(host: str, budget: float, stop: threading.Event) -> None:
    import time

    parts = urlsplit(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    assert parts.hostname is not None
    deadline = time.monotonic() + budget
    while True:
        try:
            with socket.create_connection((parts.hostname, port), timeout=min(5.0, budget)):
                return
        except OSError as exc:
            if time.monotonic() + 1 > deadline or stop.is_set():
                reason = exc.strerror or type(exc).__name__
                raise UsageError(f"cannot reach {host}: {reason} (tried for {budget:g} s)") from None
            stop.wait(1)


def _notices(s: Settings, ctx: AzureMLContext, reporter: Reporter) -> None:
    if ctx.run_id_generated:
        reporter.info(
            f"notice: AZUREML_RUN_ID is not set; using generated run id {ctx.run_id} "
            "(set AZUREML_RUN_ID to make a rerun reattach to the same Databricks run)"
        )
    if ctx.mlflow and not s.uses_new_cluster:
        reporter.info("notice: MLflow variables are passed to new clusters only; this run won't log to Azure ML")
    if s.serverless and s.task_type == "notebook" and s.pypi:
        reporter.info("notice: serverless notebooks install their own libraries; --pypi is not sent")
    if s.output and "://" in s.output and not s.output.startswith("file://"):
        store = datastore_of(s.output)
        if store and output_uri(s.output, s.datastores) is None:
            reporter.info(
                f"notice: datastore {store!r} has no account/container mapping (--datastore "
                f"{store}=ACCOUNT/CONTAINER); notebooks get output_folder only"
            )


class _StepRun:
    def __init__(
        self,
        settings: Settings,
        ctx: AzureMLContext,
        request: SubmitRequest,
        client: WorkspaceClient,
        reporter: Reporter,
        stop: StopRequest,
        clock: Clock,
    ) -> None:
        self.s = settings
        self.ctx = ctx
        self.request = request
        self.client = client
        self.report = reporter
        self.stop = stop
        self.clock = clock
        self.result = StepResult(azureml_run_id=ctx.run_id)

    # --- the step -------------------------------------------------------------------------------

    def run(self) -> StepResult:
        self._check_notebook_exists()
        if self.stop.event.is_set():  # stopped while starting up: nothing to cancel yet
            raise StoppedError(f"stopped by {self.stop.signal_name} before submitting", self.stop.exit_code)
        run_id, started_at, first = self._submit()
        seen = [first]  # what a poll abandoned on stop reports instead

        def poll() -> RunObservation:
            seen[0] = _unless_stopped(lambda: self._get_run(run_id), self.stop.event, fallback=seen[0])
            return seen[0]

        outcome = wait_until_terminal(
            poll,
            clock=self.clock,
            stop=self.stop.event,
            policy=PollPolicy(max_interval=self.s.poll_max_interval),
            deadline=self._client_deadline(),
            on_poll=StateLog(self.report.info, self.report.live),
            started_at=started_at,
            first=first,
        )
        last = outcome.last
        if outcome.reason is not EndReason.TERMINAL:
            self.result.ended_by = outcome.reason.value
            why = f"{self.stop.signal_name} received" if outcome.reason is EndReason.STOPPED else "--timeout reached"
            last = self._cancel(run_id, why)
        self._collect(last)
        if outcome.reason is EndReason.STOPPED:
            self.result.exit_code = self.stop.exit_code
        self._finish()
        if outcome.reason is EndReason.STOPPED:
            state = self.result.result_state or "cancel requested"
            raise StoppedError(
                f"stopped by {self.stop.signal_name}: Databricks run {run_id} {state}", self.stop.exit_code
            )
        return self.result

    def _client_deadline(self) -> float | None:
        """--timeout is sent to Databricks (which ends the run as TIMEDOUT); the step also enforces
        it, a little later, in case the service does not."""
        if not self.s.timeout:
            return None
        return self.s.timeout + min(30.0, 0.1 * self.s.timeout + 5.0)

    # --- submit / reattach ----------------------------------------------------------------------

    def _submit(self) -> tuple[int, float, RunObservation]:
        self.report.info(f"Azure ML run {self.ctx.run_id}: submitting {self.s.task_type} task to {self.s.host}")
        submitted_ms = int(self.clock.time() * 1000)
        with _api_errors("submit the run"):
            waiter = _unless_stopped(lambda: self.client.jobs.submit(**self.request.submit_kwargs()),
                                     self.stop.event, fallback=None)
        if waiter is None:
            self._stopped_while_submitting()
        run_id: int | None = getattr(waiter.response, "run_id", None)
        if run_id is None:
            raise RunFailedError("the workspace accepted the run but returned no run_id")
        first = self._get_run(run_id)
        run = first.run
        self.result.run_id = run_id
        self.result.run_page_url = run.run_page_url
        self.result.reattached = self._is_reattached(first, submitted_ms)
        self.report.info(f"run page: {run.run_page_url or '(no URL)'}")
        verb = "reattached to run" if self.result.reattached else "submitted run"
        self.report.info(f"{verb} {run_id} (idempotency token {self.request.idempotency_token})")
        age = max(0.0, self.clock.time() - run.start_time / 1000) if run.start_time else 0.0
        return run_id, self.clock.monotonic() - age, first

    def _is_reattached(self, first: RunObservation, submitted_ms: int) -> bool:
        """The idempotency token returns an existing run's id without saying so. The task
        description carries a submission id unique to each submit; if the server dropped it, a
        run that started before our submit is an existing one."""
        ours = submission_id_of(self.request.task.description)
        for task in first.run.tasks or []:
            theirs = submission_id_of(task.description)
            if theirs is not None:
                return theirs != ours
        start = first.run.start_time
        return start is not None and 0 < start < submitted_ms - _CLOCK_SKEW_MS

    def _get_run(self, run_id: int) -> RunObservation:
        # Raw JSON rather than `jobs.get_run`: the SDK turns an unknown lifecycle state into None,
        # and the log should name it.
        with _api_errors("poll the run"):
            body = self.client.api_client.do("GET", "/api/2.2/jobs/runs/get", query={"run_id": run_id})
        assert isinstance(body, dict)
        return RunObservation.from_response(body)

    def _check_notebook_exists(self) -> None:
        if self.s.task_type != "notebook" or self.s.source == "GIT" or self.s.git_url:
            return
        from databricks.sdk.errors import NotFound, PermissionDenied, Unauthenticated
        from databricks.sdk.errors.base import DatabricksError

        path = self.s.notebook_path
        assert path is not None
        try:
            with _api_errors("check the notebook"):
                try:
                    # A stop here leaves nothing to cancel: run() ends the step right after.
                    _unless_stopped(lambda: self.client.workspace.get_status(path), self.stop.event, fallback=None)
                except NotFound:
                    raise UsageError(f"notebook {path} not found in the workspace") from None
                except (Unauthenticated, PermissionDenied):
                    raise
                except DatabricksError:
                    # Only a hint: some identities may run notebooks they may not list, so any
                    # other answer leaves the decision to runs/submit.
                    return
        except RunFailedError:
            return

    # --- stop / timeout -------------------------------------------------------------------------

    def _stopped_while_submitting(self) -> NoReturn:
        """The submit call was abandoned (stuck in retries when the signal came), so whether it
        started a run is unknown: look for one carrying this submission's id and cancel it. Azure ML
        does not retry a cancelled job, so a run left behind here would run on unwatched."""
        why = f"{self.stop.signal_name} received while submitting"
        self.report.info(f"{why}: looking for a run this submission started")
        found = _unless_stopped(self._runs_of_this_submission, _event_after(self.s.cancel_grace), fallback=None)
        if found is None:
            self.report.info(
                f"could not tell within {self.s.cancel_grace:g} s whether this submission started a run; one "
                f"it started carries idempotency token {self.request.idempotency_token}"
            )
        for run_id in found or []:
            self._cancel(run_id, why)
        if found is None:
            what = ""
        elif found:
            what = f": cancelled Databricks run {', '.join(map(str, found))}"
        else:
            what = ": no active Databricks run of this submission was found"
        raise StoppedError(f"stopped by {self.stop.signal_name} while submitting{what}", self.stop.exit_code)

    def _runs_of_this_submission(self) -> list[int] | None:
        """Active runs whose task carries this submission's id; None when the listing failed."""
        ours = submission_id_of(self.request.task.description)
        query: dict[str, Any] = {"active_only": "true", "expand_tasks": "true", "run_type": "SUBMIT_RUN",
                                 "limit": 25}
        found: list[int] = []
        try:
            for _ in range(_SUBMISSION_SEARCH_PAGES):
                with _api_errors("list active runs"):
                    body = self.client.api_client.do("GET", "/api/2.2/jobs/runs/list", query=query)
                assert isinstance(body, dict)
                for run in body.get("runs") or []:
                    if any(submission_id_of(t.get("description")) == ours for t in run.get("tasks") or []):
                        found.append(int(run["run_id"]))
                if not body.get("next_page_token"):
                    break
                query["page_token"] = body["next_page_token"]
        except AmlDatabricksError as exc:
            self.report.info(f"listing active runs failed: {exc}")
            return None
        return found

    def _cancel(self, run_id: int, why: str) -> RunObservation:
        self.report.info(f"{why}: cancelling run {run_id}")
        try:
            with _api_errors("cancel the run"):
                # Bounded like the wait after it: in a 429 storm one SDK call can retry for minutes.
                sent = _unless_stopped(lambda: self.client.jobs.cancel_run(run_id),
                                       _event_after(self.s.cancel_grace), fallback=None)
            if sent is None:
                self.report.info(f"cancel not confirmed within {self.s.cancel_grace:g} s")
        except AmlDatabricksError as exc:
            self.report.info(f"cancel failed: {exc}")
        outcome = wait_until_terminal(
            lambda: self._get_run(run_id),
            clock=self.clock,
            stop=threading.Event(),  # the stop signal already fired; this wait is bounded instead
            policy=PollPolicy(min_interval=0.2, max_interval=min(2.0, self.s.poll_max_interval)),
            deadline=self.s.cancel_grace,
            on_poll=StateLog(self.report.info),
        )
        if not outcome.last.terminal:
            self.report.info(f"run {run_id} not terminal after {self.s.cancel_grace:g} s; leaving it cancelling")
        return outcome.last

    # --- outputs --------------------------------------------------------------------------------

    def _collect(self, last: RunObservation) -> None:
        r, run = self.result, last.run
        r.life_cycle_state, r.result_state, r.state_message = (
            last.life_cycle_state,
            last.result_state,
            last.state_message,
        )
        r.start_time, r.end_time = run.start_time, run.end_time or None
        r.durations_seconds = {
            name: value / 1000
            for name in (
                "queue_duration",
                "setup_duration",
                "execution_duration",
                "cleanup_duration",
                "run_duration",
            )
            if (value := getattr(run, name, None))
        }
        succeeded = last.result_state == "SUCCESS"
        if r.ended_by == "deadline":
            r.result_state = "TIMEDOUT"
            succeeded = False
        for task in run.tasks or []:
            entry: dict[str, Any] = {"task_key": task.task_key, "run_id": task.run_id}
            if task.state is not None:
                entry["life_cycle_state"] = task.state.life_cycle_state.value if task.state.life_cycle_state else None
                entry["result_state"] = task.state.result_state.value if task.state.result_state else None
                entry["state_message"] = task.state.state_message or None
            r.task_runs.append(entry)
            if task.run_id is not None and last.terminal:
                self._task_output(task.run_id, entry, want_error=not succeeded)
        r.exit_code = 0 if succeeded else 1
        if succeeded:
            r.message = f"run {r.run_id} succeeded"
        else:
            detail = f": {last.state_message}" if last.state_message else ""
            r.message = f"run {r.run_id} ended {r.result_state or last.life_cycle_state}{detail}"

    def _task_output(self, task_run_id: int, entry: dict[str, Any], *, want_error: bool) -> None:
        # Per task run: `runs/get-output` refuses the parent id of a multi-task run.
        try:
            with _api_errors("read the task output"):
                output = self.client.jobs.get_run_output(task_run_id)
        except AmlDatabricksError as exc:
            self.report.info(f"could not read the output of task run {task_run_id}: {exc}")
            return
        notebook = output.notebook_output
        if notebook is not None and notebook.result is not None:
            entry["exit_value"] = notebook.result
            if self.result.exit_value is None:
                self.result.exit_value = notebook.result
                self.result.exit_value_truncated = bool(notebook.truncated)
        if output.error or output.error_trace:
            entry["error"] = output.error
            if want_error:
                self.report.info(f"task {entry['task_key']} (run {task_run_id}) error: {output.error or ''}")
                if output.error_trace:
                    self.report.block("error trace:", output.error_trace)

    def _finish(self) -> None:
        r = self.result
        if r.exit_value is not None:
            shown = r.exit_value if len(r.exit_value) <= 1000 else r.exit_value[:1000] + " …"
            self.report.info(f"exit value: {shown}")
        if r.exit_code == 0 and self.s.output_required:
            self._check_output()
        self._write_result_file()
        self._mlflow_tags()
        self.report.info(r.message)

    def _check_output(self) -> None:
        """--require-output: did the notebook write anything where the next step will read?"""
        local = self.ctx.local_output
        if local is not None and _has_files(local):
            return
        mounted = f"{DEFAULT_MOUNT_POINT}/{self.ctx.output_folder}"
        listing = self._dbfs_has_files(mounted)
        if listing is True or (listing is None and local is None):
            if listing is None:
                self.report.info(f"notice: cannot check the output at {self.ctx.output} from here; skipped")
            return
        where = f"{local} or dbfs:{mounted}" if local is not None else f"dbfs:{mounted}"
        self.result.exit_code = 1
        self.result.message = (
            f"run {self.result.run_id} succeeded but wrote nothing to the output ({where}); "
            "pass --no-require-output if that is expected"
        )

    def _dbfs_has_files(self, path: str) -> bool | None:
        """True/False when DBFS answers; None when it can't be asked (no DBFS API, no permission)."""
        from databricks.sdk.errors.base import DatabricksError

        try:
            return any(True for _ in self.client.dbfs.list(path))
        except DatabricksError as exc:
            # A missing path is an answer; a missing endpoint (also 404) or a refusal is not.
            return False if exc.error_code == "RESOURCE_DOES_NOT_EXIST" else None
        except OSError:
            return None

    def _write_result_file(self) -> None:
        local = self.ctx.local_output
        if local is None:
            return
        target = local / RESULT_DIR / RESULT_FILE
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_text(self.report.mask(json.dumps(self.result.as_dict(), indent=2)) + "\n")
            os.replace(tmp, target)
        except OSError as exc:
            self.report.info(f"could not write {target}: {exc.strerror}")

    def _mlflow_tags(self) -> None:
        mlflow_run = self.ctx.mlflow_run_id
        if not mlflow_run:
            return
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            self.report.info("notice: mlflow is not installed; Databricks results not logged as MLflow tags")
            return
        r = self.result
        tags = {
            "databricks.run_id": str(r.run_id),
            "databricks.run_page_url": r.run_page_url or "",
            "databricks.result_state": r.result_state or r.life_cycle_state or "",
            "databricks.exit_value": (r.exit_value or "")[:_MLFLOW_TAG_LIMIT],
        }
        try:
            client = MlflowClient()
            for key, value in tags.items():
                client.set_tag(mlflow_run, key, value)
        except Exception as exc:
            self.report.info(f"notice: could not log MLflow tags: {type(exc).__name__}")


def _unless_stopped(call: Callable[[], ResultT], stop: threading.Event, *, fallback: ResultT
                    ) -> ResultT:
    """`call()`, given up on when `stop` fires (returning `fallback`): one SDK call can spend the whole
    --retry-budget retrying 429s, and Azure ML kills a step that does not act on SIGTERM soon. The
    abandoned call ends on its own in a daemon thread; the caller acts on the stop with fresh calls."""
    outcome: list[ResultT] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            failure.append(error)
        finally:
            done.set()

    threading.Thread(target=target, name="api-call", daemon=True).start()
    while not done.wait(STOP_CHECK_S):
        if stop.is_set():
            return fallback
    if failure:
        raise failure[0]
    return outcome[0]


def _event_after(seconds: float) -> threading.Event:
    """An event that fires after `seconds`: a deadline for `_unless_stopped`."""
    event = threading.Event()
    timer = threading.Timer(seconds, event.set)
    timer.daemon = True
    timer.start()
    return event


def _has_files(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return any(child.name != RESULT_DIR for child in folder.iterdir())


@contextlib.contextmanager
def _api_errors(what: str) -> Iterator[None]:
    """Databricks API errors → the step's errors, each on one line."""
    from databricks.sdk.errors import BadRequest, NotFound, PermissionDenied, Unauthenticated
    from databricks.sdk.errors.base import DatabricksError

    try:
        yield
    except Unauthenticated as exc:
        raise AuthError(
            f"the workspace refused the credential (401) when trying to {what}: {_first_line(exc)}"
        ) from None
    except PermissionDenied as exc:
        raise AuthError(f"permission denied (403) when trying to {what}: {_first_line(exc)}") from None
    except (BadRequest, NotFound) as exc:
        raise UsageError(f"the workspace rejected the request to {what}: {_first_line(exc)}") from None
    except DatabricksError as exc:
        raise RunFailedError(f"Databricks API error when trying to {what}: {_first_line(exc)}") from None
    except TimeoutError as exc:
        cause = exc.__cause__
        reason = _first_line(cause) if cause is not None else str(exc)
        raise RunFailedError(f"gave up trying to {what} after the retry budget: {reason}") from None
    except OSError as exc:  # connection errors the SDK did not retry
        raise RunFailedError(f"network error when trying to {what}: {type(exc).__name__}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # databricks-sdk appends its configuration ("... Config: host=..., token=***. Env: ...") to some
    # errors: useful when debugging the SDK, noise on the step's one error line.
    text = text.split(" Config: ", 1)[0]
    return text.splitlines()[0] if text else type(exc).__name__
