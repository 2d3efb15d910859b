"""The step's way to the Databricks API: every call maps its errors to the step's, and can be abandoned.

    connect(host, …)              a client (sdk.StepClient) with the step's retry budget, after a reachability
                                  probe (run beside the import of the SDK's client modules)
    Gateway(client)               one method per call the step makes (submit, runs/get, cancel, list, output,
                                  DBFS listing, the notebook check), each inside `api_errors`
    api_errors(what)              databricks-sdk errors → AuthError (401/403, exit 3), UsageError (400/404,
                                  exit 2), RunFailedError (anything else, exit 1), each on one line
    unless_stopped(call, stop)    `call()` given up on when `stop` fires: one SDK call can retry 429s for the
                                  whole --retry-budget, and Azure ML kills a step that ignores SIGTERM
    event_after(seconds)          a stop that fires by itself: a deadline for `unless_stopped`

The policy (runner.py) decides what to call and when; this module only makes the calls.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from aml_databricks.errors import AuthError, RunFailedError, UsageError, first_line
from aml_databricks.step.request import SubmitRequest, submission_id_of
from aml_databricks.step.wait import RunObservation

if TYPE_CHECKING:
    from databricks.sdk.config import Config
    from databricks.sdk.service.jobs import RunOutput

    from aml_databricks.step.auth import Credentials
    from aml_databricks.step.sdk import DatabricksApis, StepClient

STOP_CHECK_S = 0.05  # how often an API call stuck in the SDK's retries looks at the stop signal
ACTIVE_RUN_PAGES = 4  # active runs looked through (25 a page) for one an abandoned submit started
ResultT = TypeVar("ResultT")


def connect(
    host: str,
    credentials: Credentials,
    *,
    connect_timeout: float,
    retry_budget: float,
    stop: threading.Event | None = None,
    mask: Callable[[str], None] | None = None,
) -> StepClient:
    """A client with our retry budget. The host is probed first: the SDK would otherwise retry an
    unreachable host for the whole budget before saying anything. `mask` learns a token the SDK
    fetched itself, so no line can print it."""
    # The probe waits on the network while the SDK's client modules import (CPU): side by side.
    probed: list[BaseException | None] = []
    probe = threading.Thread(
        target=lambda: probed.append(_probe_error(host, connect_timeout, stop or threading.Event())),
        name="probe",
        daemon=True,
    )
    probe.start()
    import databricks.sdk.config  # noqa: F401  (the slow part of client_config)

    from aml_databricks.step.sdk import StepClient

    probe.join()
    if probed and probed[0] is not None:
        raise probed[0]
    config = client_config(host, credentials, retry_budget=retry_budget)
    if mask is not None:
        mask(_bearer(config.authenticate()))
    return StepClient(config)


def client_config(host: str, credentials: Credentials, *, retry_budget: float) -> Config:
    """databricks-sdk's Config for `credentials`. With one of the SDK's own strategies (service
    principal, Azure CLI) the first token is fetched here, so a credential that does not work is an
    AuthError now (exit 3), not an error inside the first API call."""
    from databricks.sdk.config import Config

    with _sdk_debug_log() as log:
        try:
            config = Config(
                host=host,
                retry_timeout_seconds=int(max(1, retry_budget)),
                http_timeout_seconds=60,
                **credentials.config_kwargs(),
            )
            if credentials.sdk_auth:
                config.authenticate()
        except Exception as exc:
            # The SDK drops why a strategy did not apply (e.g. `az` not logged in) into its debug log.
            # The last recorded exception is the one that made it give up; without one, its own words.
            causes = [r.exc_info[1] for r in log if r.exc_info and r.exc_info[1] is not None]
            detail = sdk_reason(causes[-1]) if causes else sdk_reason(exc)
            raise AuthError(f"could not configure the Databricks client ({credentials.kind}): {detail}") from None
    return config


def _bearer(headers: dict[str, str]) -> str:
    value = headers.get("Authorization", "")
    return value.split(" ", 1)[1] if " " in value else value


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _sdk_debug_log() -> Iterator[list[logging.LogRecord]]:
    """databricks-sdk's debug records while the block runs, kept in memory (never printed: they may
    name hosts and commands, which is fine, but the CLI keeps the SDK's logging quiet)."""
    handler = _Collect()
    sdk_log = logging.getLogger("databricks.sdk")
    level, propagate = sdk_log.level, sdk_log.propagate
    sdk_log.addHandler(handler)
    sdk_log.setLevel(logging.DEBUG)
    sdk_log.propagate = False
    try:
        yield handler.records
    finally:
        sdk_log.removeHandler(handler)
        sdk_log.setLevel(level)
        sdk_log.propagate = propagate


def _probe_error(host: str, budget: float, stop: threading.Event) -> BaseException | None:
    try:
        _probe(host, budget, stop)
    except BaseException as error:
        return error
    return None


def _probe(host: str, budget: float, stop: threading.Event) -> None:
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


class Gateway:
    """The calls the step makes, with the step's errors. Calls that may sit in the SDK's retries take
    the event that abandons them."""

    def __init__(self, client: DatabricksApis) -> None:
        self.client = client
        self.long_poll = True  # send runs/get's wait_seconds until the server refuses it once
        # The SDK's own API classes send the workspace id its Config found (host metadata) with
        # every call; the raw calls here do the same.
        self._workspace_id: str | None = getattr(getattr(client, "config", None), "workspace_id", None)

    def _call(self, method: str, path: str, *, query: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> Any:
        """One API call through the SDK's ApiClient (auth, retries, error types), with the headers
        the SDK's generated API classes send. The step calls submit, runs/get, runs/list and
        get-status this way rather than through `JobsAPI`/`WorkspaceAPI`, whose modules (with
        `service.compute`) were about 40% of the step's start before its submit."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._workspace_id:
            headers["X-Databricks-Workspace-Id"] = self._workspace_id
        return self.client.api_client.do(method, path, query=query, body=body, headers=headers)

    def notebook_missing(self, path: str, stop: threading.Event) -> bool:
        """True when the workspace says the notebook is not there. Only a hint: an identity may run
        notebooks it may not list, so any answer but 404 (or 401/403, which raise) leaves the
        decision to runs/submit. A stop abandons the check (returns False)."""
        from databricks.sdk.errors import NotFound, PermissionDenied, Unauthenticated
        from databricks.sdk.errors.base import DatabricksError

        try:
            with api_errors("check the notebook"):
                try:
                    unless_stopped(
                        lambda: self._call("GET", "/api/2.0/workspace/get-status", query={"path": path}),
                        stop, fallback=None,
                    )
                except NotFound:
                    return True
                except (Unauthenticated, PermissionDenied):
                    raise
                except DatabricksError:
                    return False
        except RunFailedError:
            return False
        return False

    def submit(self, request: SubmitRequest, stop: threading.Event) -> int | None:
        """The new (or, by idempotency token, existing) run's id; None when `stop` abandoned the call,
        so whether it started a run is unknown."""
        body = request.as_dict()
        with api_errors("submit the run"):
            answer = unless_stopped(lambda: self._call("POST", "/api/2.2/jobs/runs/submit", body=body), stop,
                                    fallback=None)
        if answer is None:
            return None
        run_id = answer.get("run_id") if isinstance(answer, dict) else None
        if run_id is None:
            raise RunFailedError("the workspace accepted the run but returned no run_id")
        return int(run_id)

    def get_run(self, run_id: int, *, wait_seconds: int = 0, seen: str | None = None) -> RunObservation:
        """runs/get. With `wait_seconds`, ask the server to hold the answer until the run changes or
        that many seconds pass (`wait_seconds` is the local workspace's long-poll extension; a real
        Databricks ignores it and answers at once, and one that refuses it (400) is not asked again).
        `seen`: the life-cycle state last shown, so a change the step has not seen yet is answered at once."""
        # Raw JSON rather than `jobs.get_run`: the SDK turns an unknown lifecycle state into None,
        # and the log should name it.
        query: dict[str, Any] = {"run_id": run_id}
        if wait_seconds > 0 and self.long_poll:
            query["wait_seconds"] = wait_seconds
            if seen:
                query["seen_life_cycle_state"] = seen
        try:
            with api_errors("poll the run"):
                body = self._call("GET", "/api/2.2/jobs/runs/get", query=query)
        except UsageError:
            if "wait_seconds" not in query:
                raise
            self.long_poll = False  # a server that refuses the extension's parameters
            return self.get_run(run_id)
        assert isinstance(body, dict)
        return RunObservation.from_response(body)

    def cancel(self, run_id: int, within: float) -> bool:
        """Ask for the cancel; False when it was not confirmed within `within` seconds (in a 429 storm
        one SDK call can retry for minutes)."""
        with api_errors("cancel the run"):
            sent = unless_stopped(lambda: self.client.jobs.cancel_run(run_id), event_after(within), fallback=None)
        return sent is not None

    def active_runs_of(self, submission_id: str | None) -> list[int]:
        """Active runs whose task carries `submission_id` (run ids); raises when the listing fails."""
        query: dict[str, Any] = {"active_only": "true", "expand_tasks": "true", "run_type": "SUBMIT_RUN",
                                 "limit": 25}
        found: list[int] = []
        for _ in range(ACTIVE_RUN_PAGES):
            with api_errors("list active runs"):
                body = self._call("GET", "/api/2.2/jobs/runs/list", query=query)
            assert isinstance(body, dict)
            for run in body.get("runs") or []:
                if any(submission_id_of(t.get("description")) == submission_id for t in run.get("tasks") or []):
                    found.append(int(run["run_id"]))
            if not body.get("next_page_token"):
                break
            query["page_token"] = body["next_page_token"]
        return found

    def task_output(self, task_run_id: int) -> RunOutput:
        # Per task run: `runs/get-output` refuses the parent id of a multi-task run.
        with api_errors("read the task output"):
            return self.client.jobs.get_run_output(task_run_id)

    def dbfs_has_files(self, path: str) -> bool | None:
        """True/False when DBFS answers; None when it can't be asked (no DBFS API, no permission)."""
        from databricks.sdk.errors.base import DatabricksError

        try:
            return any(True for _ in self.client.dbfs.list(path))
        except DatabricksError as exc:
            # A missing path is an answer; a missing endpoint (also 404) or a refusal is not.
            return False if exc.error_code == "RESOURCE_DOES_NOT_EXIST" else None
        except OSError:
            return None


def unless_stopped(call: Callable[[], ResultT], stop: threading.Event, *, fallback: ResultT) -> ResultT:
    """`call()`, given up on when `stop` fires (returning `fallback`). The abandoned call ends on its
    own in a daemon thread; the caller acts on the stop with fresh calls."""
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


def event_after(seconds: float) -> threading.Event:
    """An event that fires after `seconds`: a deadline for `unless_stopped`."""
    event = threading.Event()
    timer = threading.Timer(seconds, event.set)
    timer.daemon = True
    timer.start()
    return event


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Databricks API errors → the step's errors, each on one line."""
    from databricks.sdk.errors import BadRequest, NotFound, PermissionDenied, Unauthenticated
    from databricks.sdk.errors.base import DatabricksError

    try:
        yield
    except Unauthenticated as exc:
        reason = sdk_reason(exc)
        raise AuthError(f"the workspace refused the credential (401) when trying to {what}: {reason}") from None
    except PermissionDenied as exc:
        raise AuthError(f"permission denied (403) when trying to {what}: {sdk_reason(exc)}") from None
    except (BadRequest, NotFound) as exc:
        raise UsageError(f"the workspace rejected the request to {what}: {sdk_reason(exc)}") from None
    except DatabricksError as exc:
        raise RunFailedError(f"Databricks API error when trying to {what}: {sdk_reason(exc)}") from None
    except TimeoutError as exc:
        cause = exc.__cause__
        reason = sdk_reason(cause) if cause is not None else str(exc)
        raise RunFailedError(f"gave up trying to {what} after the retry budget: {reason}") from None
    except OSError as exc:  # connection errors the SDK did not retry
        raise RunFailedError(f"network error when trying to {what}: {type(exc).__name__}") from None


def sdk_reason(exc: BaseException) -> str:
    """The first line of a databricks-sdk error, without the configuration dump the SDK appends to
    some ("... Config: host=..., token=***. Env: ..."): useful when debugging the SDK, noise here."""
    return first_line(str(exc).split(" Config: ", 1)[0]) or type(exc).__name__
