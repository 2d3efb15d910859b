"""The runner's decisions against a scripted fake client and a fake clock: reattach, outputs, stop."""

from __future__ import annotations

import io
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.errors import BadRequest, InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service.jobs import NotebookOutput, RunOutput

from aml_databricks.errors import AuthError, StoppedError, UsageError
from aml_databricks.step.report import Masker, Reporter
from aml_databricks.step.request import submission_description
from aml_databricks.step.runner import StopRequest, run_step
from aml_databricks.step.settings import resolve
from tests.unit.test_step_wait import FakeClock

BASE = {"databricks_host": "https://adb-1.2.azuredatabricks.net", "notebook_path": "/nb", "existing_cluster_id": "c"}


class FakeJobs:
    def __init__(self, ws: FakeWorkspace) -> None:
        self.ws = ws

    def cancel_run(self, run_id: int) -> None:
        self.ws.cancelled.append(run_id)
        self.ws.states = [("TERMINATED", "CANCELED")]

    def get_run_output(self, run_id: int) -> RunOutput:
        if self.ws.output_error is not None:
            raise self.ws.output_error
        return self.ws.outputs.get(run_id, RunOutput())


class FakeApi:
    def __init__(self, ws: FakeWorkspace) -> None:
        self.ws = ws

    def do(self, method: str, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
           **_: Any) -> dict[str, Any]:
        if path.endswith("/jobs/runs/submit"):
            assert method == "POST" and body is not None
            return self.ws.submit(body)
        if path.endswith("/workspace/get-status"):
            assert query is not None
            return self.ws.get_status(query["path"])
        if path.endswith("/jobs/runs/list"):
            assert query is not None and query["active_only"] == "true" and query["expand_tasks"] == "true"
            if self.ws.landed is None:
                raise PermissionDenied("listing runs is not allowed")
            return {"runs": self.ws.active_runs()}
        assert path.endswith("/jobs/runs/get") and query is not None
        self.ws.get_queries.append(dict(query))
        if self.ws.refuses_wait and "wait_seconds" in query:  # a server that rejects unknown parameters
            raise BadRequest("Unknown parameter wait_seconds")
        return self.ws.next_run()


class FakeDbfs:
    def list(self, path: str) -> list[Any]:
        raise NotFound("no such path", error_code="RESOURCE_DOES_NOT_EXIST")


@dataclass
class FakeWorkspace:
    run_id: int = 7
    description: str | None = None  # the submission the run was created with; None = ours
    start_time: int = 0
    states: list[tuple[str, str | None]] = field(default_factory=lambda: [("RUNNING", None), ("TERMINATED", "SUCCESS")])
    outputs: dict[int, RunOutput] = field(default_factory=dict)
    status_error: Exception | None = None
    output_error: Exception | None = None
    submitted: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    polls: int = 0
    submit_stuck: threading.Event | None = None
    submit_error: Exception | None = None
    landed: bool | None = True  # whether a submit that never answered started a run; None: can't list
    refuses_wait: bool = False  # runs/get answers 400 to the wait_seconds long-poll parameter
    get_queries: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.jobs = FakeJobs(self)
        self.api_client = FakeApi(self)
        self.dbfs = FakeDbfs()

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        self.submitted.append(body)
        if self.submit_error is not None:
            raise self.submit_error
        if self.submit_stuck is not None:  # the SDK retrying 429s until the test lets go
            self.submit_stuck.wait(10)
            raise TimeoutError("Timed out after 0:05:00")
        return {"run_id": self.run_id}

    def get_status(self, path: str) -> dict[str, Any]:
        if self.status_error is not None:
            raise self.status_error
        return {"path": path, "object_type": "NOTEBOOK"}

    def active_runs(self) -> list[dict[str, Any]]:
        """runs/list: someone else's run, and ours when the submit reached the workspace."""
        other = {"run_id": 3, "tasks": [{"run_id": 4, "description": submission_description("someone-else")}]}
        ours = {"run_id": self.run_id, "tasks": [{"run_id": self.run_id + 1,
                                                  "description": self.submitted[-1]["tasks"][0]["description"]}]}
        return [other, ours] if self.landed else [other]

    def next_run(self) -> dict[str, Any]:
        self.polls += 1
        state, result = self.states[0] if len(self.states) == 1 else self.states.pop(0)
        description = self.description
        if description is None:
            description = self.submitted[-1]["tasks"][0]["description"]
        task_state: dict[str, Any] = {"life_cycle_state": state}
        run_state: dict[str, Any] = {"life_cycle_state": state}
        if result:
            task_state["result_state"] = run_state["result_state"] = result
        return {
            "run_id": self.run_id,
            "run_page_url": f"https://adb/#run/{self.run_id}",
            "start_time": self.start_time,
            "state": run_state,
            "tasks": [{"task_key": "main", "run_id": self.run_id + 1, "description": description, "state": task_state}],
        }


def step(ws: FakeWorkspace, env: dict[str, str] | None = None, stop: StopRequest | None = None,  # type: ignore[no-untyped-def]
         log: io.StringIO | None = None, **flags: Any):
    log = log or io.StringIO()
    reporter = Reporter(Masker(), log=log, out=log)
    clock = FakeClock()
    result = run_step(
        resolve({**BASE, **flags}, {}),
        env={"AZUREML_RUN_ID": "job_1", **(env or {})},
        reporter=reporter,
        stop=stop,
        clock=clock,
        client=ws,  # type: ignore[arg-type]
    )
    return result, log.getvalue()


def test_fresh_submit_succeeds_with_exit_value() -> None:
    ws = FakeWorkspace(outputs={8: RunOutput(notebook_output=NotebookOutput(result="42"))})
    result, log = step(ws)
    assert result.exit_code == 0 and result.exit_value == "42" and not result.reattached
    assert "submitted run 7" in log and "exit value: 42" in log
    assert ws.submitted[0]["idempotency_token"].startswith("aml-dbx-")


def test_reattach_detected_by_another_submission_id() -> None:
    ws = FakeWorkspace(description=submission_description("earlier-attempt"))
    result, log = step(ws)
    assert result.reattached and "reattached to run 7" in log


def test_reattach_falls_back_to_start_time_when_the_server_drops_the_description() -> None:
    old = FakeWorkspace(description="", start_time=1_699_999_000_000)  # well before the fake clock's now
    assert step(old)[0].reattached
    fresh = FakeWorkspace(description="", start_time=1_700_000_000_000)
    assert not step(fresh)[0].reattached


def test_failure_reads_error_and_trace_of_the_failed_task_run() -> None:
    ws = FakeWorkspace(
        states=[("TERMINATED", "FAILED")],
        outputs={8: RunOutput(error="ValueError: x", error_trace="Traceback ...\nValueError: x")},
    )
    result, log = step(ws)
    assert result.exit_code == 1
    assert "task main (run 8) error: ValueError: x" in log
    assert "    Traceback ..." in log


def test_output_read_failure_is_reported_not_fatal() -> None:
    ws = FakeWorkspace(states=[("INTERNAL_ERROR", None)], output_error=NotFound("Run 8 does not exist."))
    result, log = step(ws)
    assert result.exit_code == 1 and "could not read the output of task run 8" in log


def sigterm_at_poll(ws: FakeWorkspace, poll: int) -> StopRequest:
    """A stop request that SIGTERM sets right after the workspace answers poll number `poll`."""
    stop = StopRequest()
    original = ws.next_run

    def poll_then_signal() -> dict[str, Any]:
        body = original()
        if ws.polls == poll:
            stop.request(143, "SIGTERM")
        return body

    ws.next_run = poll_then_signal  # type: ignore[method-assign]
    return stop


def test_stop_cancels_waits_and_raises_with_the_signals_code() -> None:
    ws = FakeWorkspace(states=[("RUNNING", None)])
    stop = sigterm_at_poll(ws, 2)
    with pytest.raises(StoppedError) as caught:
        step(ws, stop=stop)
    assert caught.value.exit_code == 143 and ws.cancelled == [7]
    assert "CANCELED" in str(caught.value)


def test_stop_before_submit_submits_nothing() -> None:
    stop = StopRequest()
    stop.request(130, "SIGINT")
    ws = FakeWorkspace()
    with pytest.raises(StoppedError) as caught:
        step(ws, stop=stop)
    assert caught.value.exit_code == 130 and ws.submitted == []


def test_notebook_not_found_and_forbidden() -> None:
    """The check runs beside the submit: a run submitted for a missing notebook is cancelled."""
    missing = FakeWorkspace(status_error=NotFound("Path (/nb) doesn't exist."))
    with pytest.raises(UsageError, match=r"notebook /nb not found in the workspace \(run 7 cancelled\)"):
        step(missing)
    assert missing.cancelled == [7]
    forbidden = FakeWorkspace(status_error=PermissionDenied("no"))
    with pytest.raises(AuthError, match="permission denied"):
        step(forbidden)
    assert forbidden.cancelled == [7]


def test_a_missing_notebook_the_submit_also_rejects_is_named() -> None:
    ws = FakeWorkspace(status_error=NotFound("Path (/nb) doesn't exist."), submit_error=BadRequest("bad notebook"))
    with pytest.raises(UsageError, match=r"^notebook /nb not found in the workspace$"):
        step(ws)
    assert ws.cancelled == []


def test_polls_ask_for_the_long_poll_and_a_server_that_refuses_it_is_polled_plainly() -> None:
    honours = FakeWorkspace(states=[("RUNNING", None), ("RUNNING", None), ("TERMINATED", "SUCCESS")])
    assert step(honours)[0].exit_code == 0
    assert honours.get_queries[0] == {"run_id": 7}  # the first look after the submit is not held
    assert all(q.get("wait_seconds") == 10 for q in honours.get_queries[1:])

    refuses = FakeWorkspace(states=[("RUNNING", None), ("RUNNING", None), ("TERMINATED", "SUCCESS")],
                            refuses_wait=True)
    result, log = step(refuses)
    assert result.exit_code == 0 and "error" not in log.lower()
    held = [q for q in refuses.get_queries if "wait_seconds" in q]
    assert len(held) == 1  # refused once, never asked again
    assert refuses.polls == honours.polls


def test_run_json_and_require_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, log = step(FakeWorkspace(), output=str(out))
    assert result.exit_code == 1 and "wrote nothing to the output" in log
    assert json.loads((out / "_databricks" / "run.json").read_text())["exit_code"] == 1

    (out / "part-0.parquet").write_text("x")
    result, _ = step(FakeWorkspace(), output=str(out))
    assert result.exit_code == 0


def test_secrets_are_masked_in_every_line() -> None:
    token = "mlflow-secret-token-1234"
    ws = FakeWorkspace(states=[("TERMINATED", "FAILED")], outputs={8: RunOutput(error=f"leaked {token}")})
    _, log = step(ws, env={"MLFLOW_TRACKING_TOKEN": token})
    assert token not in log and "leaked ***" in log


def test_generated_run_id_is_announced() -> None:
    log = io.StringIO()
    run_step(
        resolve({**BASE}, {}),
        env={},
        reporter=Reporter(Masker(), log=log, out=log),
        clock=FakeClock(),
        stop=StopRequest(threading.Event()),
        client=FakeWorkspace(),  # type: ignore[arg-type]
    )
    assert "AZUREML_RUN_ID is not set; using generated run id local_" in log.getvalue()


def test_stop_interrupts_a_poll_stuck_in_retries() -> None:
    """A 429 storm keeps one SDK call retrying for up to --retry-budget; SIGTERM must not wait for it."""
    stop = StopRequest()
    ws = FakeWorkspace(states=[("RUNNING", None)])
    storm_over = threading.Event()
    original = ws.next_run

    def stuck_on_second_poll() -> dict[str, Any]:
        body = original()
        if ws.polls == 2:
            threading.Timer(0.2, stop.request, args=(143, "SIGTERM")).start()
            storm_over.wait(10)  # the step returns long before: it must not wait for this call
            raise TimeoutError("Timed out after 0:05:00")  # how the SDK ends a spent retry budget
        return body

    ws.next_run = stuck_on_second_poll  # type: ignore[method-assign]
    try:
        with pytest.raises(StoppedError) as caught:
            step(ws, stop=stop)
    finally:
        storm_over.set()
    assert caught.value.exit_code == 143 and ws.cancelled == [7]


@pytest.mark.parametrize("landed", [True, False, None])
def test_stop_during_a_submit_stuck_in_retries_cancels_the_run_it_started(landed: bool | None) -> None:
    """SIGTERM while the SDK retries a submit: the step must not wait out the retries, and a run the
    submit did start (its answer lost) must not run on unwatched: found by submission id, cancelled."""
    stop = StopRequest()
    ws = FakeWorkspace(submit_stuck=threading.Event(), landed=landed)
    log = io.StringIO()
    threading.Timer(0.2, stop.request, args=(143, "SIGTERM")).start()
    try:
        with pytest.raises(StoppedError) as caught:
            step(ws, stop=stop, log=log)
    finally:
        ws.submit_stuck.set()  # type: ignore[union-attr]
    assert caught.value.exit_code == 143
    if landed:
        assert ws.cancelled == [7]  # ours; run 3 belongs to another submission
        assert str(caught.value) == "stopped by SIGTERM while submitting: cancelled Databricks run 7"
    elif landed is False:
        assert ws.cancelled == []
        assert "no active Databricks run of this submission was found" in str(caught.value)
    else:
        assert ws.cancelled == [] and str(caught.value) == "stopped by SIGTERM while submitting"
        assert "carries idempotency token aml-dbx-" in log.getvalue()


def test_stop_during_a_notebook_check_stuck_in_retries_cancels_the_run() -> None:
    """The check runs beside the submit; a stop while it hangs does not wait for it: the run the
    submit started is cancelled."""
    stop = StopRequest()
    ws = FakeWorkspace()
    storm_over, check_returned = threading.Event(), threading.Event()

    def stuck(path: str) -> dict[str, Any]:
        storm_over.wait(10)
        check_returned.set()
        return {}

    ws.get_status = stuck  # type: ignore[method-assign]
    threading.Timer(0.2, stop.request, args=(143, "SIGTERM")).start()
    try:
        with pytest.raises(StoppedError) as caught:
            step(ws, stop=stop)
        assert not check_returned.is_set()  # the step did not wait for the stuck call
    finally:
        storm_over.set()
    assert caught.value.exit_code == 143 and "Databricks run 7 CANCELED" in str(caught.value)
    assert ws.cancelled == [7]


def _elapsed(log: str) -> list[float]:
    return [float(m) for m in re.findall(r"^\[\s*([\d.]+)s\]", log, re.M)]


def test_after_a_cancel_the_elapsed_time_keeps_counting_from_the_submit() -> None:
    ws = FakeWorkspace(states=[("RUNNING", None)])
    stop = sigterm_at_poll(ws, 4)
    log = io.StringIO()
    with pytest.raises(StoppedError):
        step(ws, stop=stop, log=log)
    text = log.getvalue()
    cancelled = next(line for line in text.splitlines() if "CANCELED" in line and line.startswith("["))
    times = _elapsed(text)
    assert times == sorted(times) and times[0] == 0.0
    assert _elapsed(cancelled)[0] > 1.0  # not restarted at 0 for the cancel's own wait


class TtyLog(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_tty_a_live_line_counts_up_between_polls() -> None:
    ws = FakeWorkspace(states=[("RUNNING", None)] * 12 + [("TERMINATED", "SUCCESS")])
    log = TtyLog()
    result, text = step(ws, log=log)
    assert result.exit_code == 0
    live = [float(m) for m in re.findall(r"\r\x1b\[2K\[\s*([\d.]+)s\] RUNNING …", text)]
    assert len(live) > ws.polls  # redrawn between polls, not only at them
    assert live == sorted(live)
    plain = FakeWorkspace(states=[("RUNNING", None)] * 12 + [("TERMINATED", "SUCCESS")])
    assert "\x1b" not in step(plain)[1]  # not a TTY (Azure ML's log): plain lines only


@pytest.mark.parametrize(
    "refusal",
    [BadRequest("Invalid notebook path: ../x"), InvalidParameterValue("timeout_seconds must be an int32")],
)
def test_a_submit_the_workspace_rejects_is_bad_input_exit_2(refusal: Exception) -> None:
    with pytest.raises(UsageError) as caught:
        step(FakeWorkspace(submit_error=refusal))
    assert caught.value.exit_code == 2
    assert str(caught.value) == f"the workspace rejected the request to submit the run: {refusal}"
