"""The step's policy: submit (idempotent) → wait → (stop or --timeout? cancel, wait for terminal) → outputs.

    run_step(settings, env, reporter, stop)          the whole step, used by the CLI
      context_from_env / build_submit_request        what to run
      resolve_credentials → connect                  whom to ask (preflight: host reachable)
      submit ∥ notebook check → reattached?          a retried step finds its run by the token; the
                                                     check runs beside the submit (missing: cancel, exit 2)
      wait_until_terminal                            own loop, interruptible by `stop`
      cancel + bounded wait                          on SIGTERM/SIGINT and on --timeout
      collect → publish                              outputs.py: exit value, run.json, MLflow tags

The calls themselves, their error mapping and their abandonment on a stop are gateway.py's.
Every failure surfaces as an `AmlDatabricksError` with one line and an exit code (errors.py).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from aml_databricks.errors import AmlDatabricksError, StoppedError, UsageError
from aml_databricks.step.auth import AzureFactories, CredentialSources, resolve_credentials
from aml_databricks.step.azureml import MLFLOW_TOKEN, AzureMLContext, context_from_env, datastore_of, output_uri
from aml_databricks.step.gateway import Gateway, connect, event_after, unless_stopped
from aml_databricks.step.outputs import StepResult, collect, preload_mlflow, publish
from aml_databricks.step.report import Reporter
from aml_databricks.step.request import SubmitRequest, build_submit_request, masked, submission_id_of
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
    from aml_databricks.step.sdk import DatabricksApis

__all__ = ["StepResult", "StopRequest", "run_step"]

# A reattached run started before our submit; a fresh one at or after it. Allow this much clock
# difference between this machine and the workspace (only used when the submission id is missing).
_CLOCK_SKEW_MS = 2000


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


@dataclass(frozen=True)
class Timing:
    """The settings the policy itself reads (the rest went into the request and the client)."""

    timeout: int = 0  # --timeout, also sent as timeout_seconds; 0 = none
    poll_max_interval: float = 10.0
    cancel_grace: float = 60.0

    @property
    def client_deadline(self) -> float | None:
        """--timeout is sent to Databricks (which ends the run as TIMEDOUT); the step also enforces
        it, a little later, in case the service does not."""
        if not self.timeout:
            return None
        return self.timeout + min(30.0, 0.1 * self.timeout + 5.0)


def run_step(
    settings: Settings,
    *,
    env: Mapping[str, str],
    reporter: Reporter,
    stop: StopRequest | None = None,
    clock: Clock | None = None,
    factories: AzureFactories | None = None,
    client: DatabricksApis | None = None,
) -> StepResult:
    """The whole step. Returns the result for exit code 0/1; raises for 2/3/130/143."""
    stop = stop or StopRequest()
    ctx = context_from_env(settings.output, env)
    reporter.mask.add(ctx.mlflow.get(MLFLOW_TOKEN))
    _notices(settings, ctx, reporter)
    request = build_submit_request(settings, ctx, submission_id=uuid.uuid4().hex[:16])
    if settings.dry_run:
        reporter.document(masked(request.as_dict()))
        return StepResult(azureml_run_id=ctx.run_id, message="dry run: nothing submitted")
    assert settings.host is not None  # validated: required unless --dry-run
    if client is None:
        credentials = resolve_credentials(CredentialSources.from_settings(settings), env, factories)
        reporter.mask.add(*credentials.secret_values)
        reporter.info(f"credential: {credentials.kind}")
        client = connect(
            settings.host,
            credentials,
            connect_timeout=settings.connect_timeout,
            retry_budget=settings.retry_budget,
            stop=stop.event,
            mask=reporter.mask.add,
        )
    step = _StepRun(
        ctx,
        request,
        Gateway(client),
        reporter,
        stop,
        clock or RealClock(),
        Timing(settings.timeout, settings.poll_max_interval, settings.cancel_grace),
    )
    notebook = settings.notebook_path if settings.task_type == "notebook" else None
    if settings.source == "GIT" or settings.git_url:
        notebook = None  # a repo path, not a workspace object: nothing to check beforehand
    return step.run(
        f"{settings.task_type} task to {settings.host}", notebook, require_output=settings.output_required
    )


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
        ctx: AzureMLContext,
        request: SubmitRequest,
        gateway: Gateway,
        reporter: Reporter,
        stop: StopRequest,
        clock: Clock,
        timing: Timing,
    ) -> None:
        self.ctx = ctx
        self.request = request
        self.api = gateway
        self.report = reporter
        self.stop = stop
        self.clock = clock
        self.timing = timing
        self.result = StepResult(azureml_run_id=ctx.run_id)
        self.started_at = clock.monotonic()  # the submit (or the reattached run's start): elapsed counts from it
        self._submitted_ms = 0

    def run(self, what: str, notebook: str | None, *, require_output: bool) -> StepResult:
        if self.stop.event.is_set():  # stopped while starting up: nothing to cancel yet
            raise StoppedError(f"stopped by {self.stop.signal_name} before submitting", self.stop.exit_code)
        # The notebook check runs beside the submit rather than before it: one round trip less
        # before the run starts. It almost always finds the notebook; when it does not, the run
        # just submitted is cancelled and the step fails as before (exit 2, the notebook named).
        missing = None
        if notebook is not None:
            path = notebook
            missing = _Background(lambda: self.api.notebook_missing(path, self.stop.event))
        try:
            run_id = self._submit_call(what)
        except AmlDatabricksError:
            if missing is not None and missing.result():
                raise UsageError(f"notebook {notebook} not found in the workspace") from None
            raise
        if missing is not None:
            try:
                gone = missing.result()
            except AmlDatabricksError:  # the check was refused (401/403): the step ends, so does the run
                self._cancel_quietly(run_id)
                raise
            if gone:
                self._cancel_quietly(run_id)
                raise UsageError(f"notebook {notebook} not found in the workspace (run {run_id} cancelled)")
        first = self._first_look(run_id)
        preload_mlflow(self.ctx.mlflow_run_id)  # for the tags at the end, while the run runs
        seen = [first]  # what a poll abandoned on stop reports instead

        # A long-poll ends at least this often; never longer than --poll-max-interval (below 1 s: none).
        hold = int(self.timing.poll_max_interval)

        def poll() -> RunObservation:
            seen[0] = unless_stopped(
                lambda: self.api.get_run(run_id, wait_seconds=hold, seen=seen[0].life_cycle_state),
                self.stop.event, fallback=seen[0],
            )
            return seen[0]

        outcome = wait_until_terminal(
            poll,
            clock=self.clock,
            stop=self.stop.event,
            policy=PollPolicy(max_interval=self.timing.poll_max_interval),
            deadline=self.timing.client_deadline,
            on_poll=StateLog(self.report.info, self.report.live),
            started_at=self.started_at,
            first=first,
            on_tick=self._tick if self.report.is_tty else None,
        )
        last = outcome.last
        if outcome.reason is not EndReason.TERMINAL:
            self.result.ended_by = outcome.reason.value
            why = f"{self.stop.signal_name} received" if outcome.reason is EndReason.STOPPED else "--timeout reached"
            last = self._cancel(run_id, why)
        collect(self.result, last, self.api, self.report)
        if outcome.reason is EndReason.STOPPED:
            self.result.exit_code = self.stop.exit_code
        publish(self.result, self.ctx, self.api, self.report, require_output=require_output)
        if outcome.reason is EndReason.STOPPED:
            state = self.result.result_state or "cancel requested"
            raise StoppedError(
                f"stopped by {self.stop.signal_name}: Databricks run {run_id} {state}", self.stop.exit_code
            )
        return self.result

    def _tick(self, observation: RunObservation, elapsed: float) -> None:
        self.report.live(f"[{elapsed:7.1f}s] {observation.label} …")

    # --- submit / reattach ----------------------------------------------------------------------

    def _submit_call(self, what: str) -> int:
        self.report.info(f"Azure ML run {self.ctx.run_id}: submitting {what}")
        self._submitted_ms = int(self.clock.time() * 1000)
        self.started_at = self.clock.monotonic()
        run_id = self.api.submit(self.request, self.stop.event)
        if run_id is None:
            self._stopped_while_submitting()
        return run_id

    def _first_look(self, run_id: int) -> RunObservation:
        first = self.api.get_run(run_id)
        run = first.run
        self.result.run_id = run_id
        self.result.run_page_url = run.run_page_url
        self.result.reattached = self._is_reattached(first, self._submitted_ms)
        self.report.info(f"run page: {run.run_page_url or '(no URL)'}")
        verb = "reattached to run" if self.result.reattached else "submitted run"
        self.report.info(f"{verb} {run_id} (idempotency token {self.request.idempotency_token})")
        age = max(0.0, self.clock.time() - run.start_time / 1000) if run.start_time else 0.0
        self.started_at = self.clock.monotonic() - age
        return first

    def _cancel_quietly(self, run_id: int) -> None:
        """Cancel a run the step will not follow (bounded by --cancel-grace, errors only logged)."""
        try:
            self.api.cancel(run_id, within=self.timing.cancel_grace)
        except AmlDatabricksError as exc:
            self.report.info(f"could not cancel run {run_id}: {exc}")

    def _is_reattached(self, first: RunObservation, submitted_ms: int) -> bool:
        """The idempotency token returns an existing run's id without saying so. The task
        description carries a submission id unique to each submit; if the server dropped it, a
        run that started before our submit is an existing one."""
        ours = self.request.submission_id
        for task in first.run.tasks or []:
            theirs = submission_id_of(task.description)
            if theirs is not None:
                return theirs != ours
        start = first.run.start_time
        return start is not None and 0 < start < submitted_ms - _CLOCK_SKEW_MS

    # --- stop / timeout -------------------------------------------------------------------------

    def _stopped_while_submitting(self) -> NoReturn:
        """The submit call was abandoned (stuck in retries when the signal came), so whether it
        started a run is unknown: look for one carrying this submission's id and cancel it. Azure ML
        does not retry a cancelled job, so a run left behind here would run on unwatched."""
        why = f"{self.stop.signal_name} received while submitting"
        grace = self.timing.cancel_grace
        self.report.info(f"{why}: looking for a run this submission started")
        found = unless_stopped(self._runs_of_this_submission, event_after(grace), fallback=None)
        if found is None:
            self.report.info(
                f"could not tell within {grace:g} s whether this submission started a run; one "
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
        try:
            return self.api.active_runs_of(self.request.submission_id)
        except AmlDatabricksError as exc:
            self.report.info(f"listing active runs failed: {exc}")
            return None

    def _cancel(self, run_id: int, why: str) -> RunObservation:
        grace = self.timing.cancel_grace
        self.report.info(f"{why}: cancelling run {run_id}")
        try:
            if not self.api.cancel(run_id, within=grace):
                self.report.info(f"cancel not confirmed within {grace:g} s")
        except AmlDatabricksError as exc:
            self.report.info(f"cancel failed: {exc}")
        outcome = wait_until_terminal(
            lambda: self.api.get_run(run_id),
            clock=self.clock,
            stop=threading.Event(),  # the stop signal already fired; this wait is bounded instead
            policy=PollPolicy(min_interval=0.2, max_interval=min(2.0, self.timing.poll_max_interval)),
            deadline=grace,
            # The lines keep counting from the submit: the cancel continues the run's timeline.
            on_poll=StateLog(self.report.info, since=self.clock.monotonic() - self.started_at),
        )
        if not outcome.last.terminal:
            self.report.info(f"run {run_id} not terminal after {grace:g} s; leaving it cancelling")
        return outcome.last


class _Background:
    """`call()` started in a daemon thread now; `result()` waits for it and returns (or raises) what it did."""

    def __init__(self, call: Callable[[], bool]) -> None:
        self._call = call
        self._outcome: list[bool] = []
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._target, name="preflight", daemon=True)
        self._thread.start()

    def _target(self) -> None:
        try:
            self._outcome.append(self._call())
        except BaseException as error:
            self._failure.append(error)

    def result(self) -> bool:
        self._thread.join()
        if self._failure:
            raise self._failure[0]
        return self._outcome[0]
