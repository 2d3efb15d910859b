"""DriverExecutor: real driver subprocesses, started, waited for and cancelled through the executor seam."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
from databricks.sdk.service.jobs import RunResultState, TerminationCodeCode

from aml_databricks.compute.executor import TaskLaunch, TaskOutcome
from aml_databricks.compute.host.process import DriverExecution, DriverExecutor
from aml_databricks.compute.protocol import FileSystem
from aml_databricks.workspace.launch import task_spec

pytestmark = pytest.mark.subprocess

HEADER = "# Databricks notebook source\n"
SEPARATOR = "\n\n# COMMAND ----------\n\n"


class Running:
    """The on_running callback, observable from the test."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self) -> None:
        self.event.set()


@pytest.fixture(params=[False, True], ids=["fresh", "prefork"])
def executor(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DriverExecutor]:
    executor = DriverExecutor(tmp_path / "data", prefork=request.param)
    yield executor
    executor.close()


def launch(
    tmp_path: Path,
    source: str,
    *,
    task: dict[str, Any] | None = None,
    run_id: int = 1,
) -> TaskLaunch:
    return TaskLaunch(
        run_id=run_id,
        parent_run_id=100,
        task=task_spec({"task_key": "main", **(task or {"notebook_task": {"notebook_path": "/Users/me/nb"}})},
                       source, "PYTHON"),
        run_dir=tmp_path / "runs" / str(run_id),
        api_host="",  # no API: these tests need none
        run_token="run-token",
        fs=FileSystem.of_data_dir(tmp_path / "data"),
    )


def finish(execution: DriverExecution, timeout: float = 60) -> TaskOutcome:
    outcome = execution.wait(timeout)
    assert outcome is not None, "the task did not end"
    return outcome


def test_success_with_exit_value_logs_and_parameters(tmp_path: Path, executor: DriverExecutor) -> None:
    source = HEADER + 'print("hello")' + SEPARATOR + 'dbutils.notebook.exit(dbutils.widgets.get("who"))'
    task = {"notebook_task": {"notebook_path": "/Users/me/nb", "base_parameters": {"who": "world"}}}
    running = Running()
    outcome = finish(executor.start(launch(tmp_path, source, task=task), running))

    assert running.event.is_set()
    assert outcome.result_state == RunResultState.SUCCESS
    assert outcome.termination_code == TerminationCodeCode.SUCCESS
    assert (outcome.notebook_result, outcome.truncated) == ("world", False)
    assert outcome.logs == "hello\n"
    task_file = tmp_path / "runs/1/task.json"
    assert task_file.stat().st_mode & 0o777 == 0o600
    written = json.loads(task_file.read_text())
    assert written["kind"] == "notebook" and written["parameters"] == {"who": "world"}
    assert written["fs"]["dbfs_root"] == str(tmp_path / "data/dbfs")


def test_failure_carries_error_and_trace(tmp_path: Path, executor: DriverExecutor) -> None:
    outcome = finish(
        executor.start(launch(tmp_path, HEADER + "x = 1" + SEPARATOR + "raise ValueError('boom')"), Running())
    )

    assert outcome.result_state == RunResultState.FAILED
    assert outcome.termination_code == TerminationCodeCode.RUN_EXECUTION_ERROR
    assert outcome.error == "ValueError: boom"
    assert outcome.error_trace is not None and '<notebook /Users/me/nb, cell 2>", line 6' in outcome.error_trace


def test_python_file_with_parameters(tmp_path: Path, executor: DriverExecutor) -> None:
    task = {"spark_python_task": {"python_file": "/Workspace/job.py", "parameters": ["a", 2]}}
    script = "import sys\nprint(sys.argv)\nsys.exit(4 if sys.argv[2] == '2' else 0)\n"
    outcome = finish(executor.start(launch(tmp_path, script, task=task), Running()))

    assert outcome.logs == "['/Workspace/job.py', 'a', '2']\n"
    assert outcome.result_state == RunResultState.FAILED
    assert outcome.error == "SystemExit: 4"


def test_spark_env_vars_are_in_the_driver_environment(tmp_path: Path, executor: DriverExecutor) -> None:
    task = {
        "notebook_task": {"notebook_path": "/Users/me/nb"},
        "new_cluster": {"spark_version": "15.4.x-scala2.12", "spark_env_vars": {"MY_SETTING": "blue"}},
    }
    source = HEADER + (
        "import os, sys\n"
        'dbutils.notebook.exit(" ".join([os.environ["MY_SETTING"], os.environ["DATABRICKS_RUNTIME_VERSION"], '
        'str(os.environ["PYSPARK_PYTHON"] == sys.executable)]))'
    )
    outcome = finish(executor.start(launch(tmp_path, source, task=task), Running()))

    assert outcome.notebook_result == "blue 15.4 True"


def test_two_runs_do_not_share_environment_or_widgets(tmp_path: Path, executor: DriverExecutor) -> None:
    source = HEADER + 'import os\ndbutils.notebook.exit(os.environ["COLOR"] + dbutils.widgets.get("n"))'
    executions = [
        executor.start(
            launch(
                tmp_path,
                source,
                run_id=run_id,
                task={
                    "notebook_task": {"notebook_path": "/nb", "base_parameters": {"n": str(run_id)}},
                    "new_cluster": {"spark_env_vars": {"COLOR": color}},
                },
            ),
            Running(),
        )
        for run_id, color in ((1, "red"), (2, "green"))
    ]

    assert [finish(e).notebook_result for e in executions] == ["red1", "green2"]


def test_cancel_a_sleeping_notebook_leaves_no_process(tmp_path: Path, executor: DriverExecutor) -> None:
    pids = tmp_path / "pids"
    source = HEADER + (
        "import os, subprocess, time\n"
        'child = subprocess.Popen(["sleep", "300"])\n'
        f'open("{pids}", "w").write(f"{{os.getpid()}} {{child.pid}}")\n'
        "time.sleep(300)"
    )
    running = Running()
    execution = executor.start(launch(tmp_path, source), running)
    assert running.event.wait(30)
    deadline = time.monotonic() + 30
    while not pids.exists() or not pids.read_text():
        assert time.monotonic() < deadline, "the notebook did not start"
        time.sleep(0.05)

    started = time.monotonic()
    execution.cancel()
    outcome = execution.wait(2)
    elapsed = time.monotonic() - started

    assert outcome is not None and outcome.result_state == RunResultState.CANCELED
    assert elapsed < 2
    for pid in map(int, pids.read_text().split()):
        assert not _alive(pid), f"process {pid} survived the cancel"
    execution.cancel()  # idempotent
    assert execution.wait(0) is outcome


def test_secret_values_are_redacted_from_all_output(tmp_path: Path, executor: DriverExecutor) -> None:
    # dbutils.secrets.get needs the API (tests/e2e); here the value goes into the run's redaction set directly.
    source = HEADER + SEPARATOR.join(
        [
            'secret = "s3cr3t-value"\ndbutils.secrets._context.redactor.add(secret)',
            'print("the secret is", secret)\nimport os, sys\nos.system("echo shell sees " + secret)\n'
            'print("stderr " + secret, file=sys.stderr)\nsys.stdout.write("no newline " + secret)',
            "# MAGIC %sh\n# MAGIC echo\n# MAGIC echo sh cell sees s3cr3t-value",
            'dbutils.notebook.exit("exit " + secret)',
        ]
    )
    outcome = finish(executor.start(launch(tmp_path, source), Running()))

    assert outcome.logs is not None and "s3cr3t-value" not in outcome.logs
    for line in ("the secret is", "shell sees", "stderr", "no newline", "sh cell sees"):
        assert f"{line} [REDACTED]" in outcome.logs
    assert outcome.notebook_result == "exit [REDACTED]"
    assert "s3cr3t-value" not in (tmp_path / "runs/1/output.log").read_text()


def test_driver_crash_is_a_driver_error(tmp_path: Path, executor: DriverExecutor) -> None:
    source = HEADER + 'print("about to crash", flush=True)\nimport os\nos._exit(9)'
    outcome = finish(executor.start(launch(tmp_path, source), Running()))

    assert outcome.result_state == RunResultState.FAILED
    assert outcome.termination_code == TerminationCodeCode.DRIVER_ERROR
    assert outcome.error is not None
    assert "about to crash" in outcome.error  # the last output, even though the driver died abruptly
    # A forked driver's exit status belongs to the fork server: only a fresh driver's is known.
    assert "exit code 9" in outcome.error or "ended without a result" in outcome.error


def test_a_stale_result_file_is_not_read(tmp_path: Path, executor: DriverExecutor) -> None:
    run_dir = tmp_path / "runs/1"
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps({"result_state": "SUCCESS"}))
    outcome = finish(executor.start(launch(tmp_path, HEADER + "import os\nos._exit(1)"), Running()))

    assert outcome.termination_code == TerminationCodeCode.DRIVER_ERROR


def test_libraries_hook_puts_folders_on_the_path(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    (library / "my_helpers.py").write_text("VALUE = 'from a library'\n")
    calls: list[list[dict[str, Any]]] = []

    def install(libraries: list[dict[str, Any]], log: TextIO) -> list[Path]:
        calls.append(libraries)
        log.write("installing my_helpers\n")
        return [library]

    executor = DriverExecutor(tmp_path / "data", libraries=install)
    try:
        task = {"notebook_task": {"notebook_path": "/nb"}, "libraries": [{"pypi": {"package": "my-helpers"}}]}
        source = HEADER + "import my_helpers\ndbutils.notebook.exit(my_helpers.VALUE)"
        outcome = finish(executor.start(launch(tmp_path, source, task=task), Running()))
    finally:
        executor.close()

    assert calls == [[{"pypi": {"package": "my-helpers"}}]]
    assert outcome.notebook_result == "from a library"
    assert outcome.logs is not None and outcome.logs.startswith("installing my_helpers\n")


def test_library_failure_is_library_installation_error(tmp_path: Path) -> None:
    def install(libraries: list[dict[str, Any]], log: TextIO) -> list[Path]:
        raise RuntimeError("No matching distribution found for nope==9")

    executor = DriverExecutor(tmp_path / "data", libraries=install)
    try:
        running = Running()
        task = {"notebook_task": {"notebook_path": "/nb"}, "libraries": [{"pypi": {"package": "nope==9"}}]}
        outcome = finish(executor.start(launch(tmp_path, HEADER + "x = 1", task=task), running))
    finally:
        executor.close()

    assert outcome.result_state == RunResultState.FAILED
    assert outcome.termination_code == TerminationCodeCode.LIBRARY_INSTALLATION_ERROR
    assert outcome.error == "RuntimeError: No matching distribution found for nope==9"
    assert not running.event.is_set()


class GatedSpark:
    """A SparkProvider whose servers take as long as the test says: for cancel while PENDING."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.leases: list[RecordingLease] = []
        self.closed = False

    def acquire(self, cluster: dict[str, Any], run_id: int, session_id: str | None = None) -> RecordingLease:
        self.entered.set()
        self.gate.wait(30)
        lease = RecordingLease()
        self.leases.append(lease)
        return lease

    def close(self) -> None:
        self.closed = True


class RecordingLease:
    remote = "sc://127.0.0.1:1/;session_id=unused"

    def __init__(self) -> None:
        self.interrupted = False
        self.released = threading.Event()

    def interrupt(self) -> None:
        self.interrupted = True

    def release(self) -> None:
        self.released.set()


def test_cancel_while_spark_is_starting(tmp_path: Path) -> None:
    spark = GatedSpark()
    executor = DriverExecutor(tmp_path / "data", spark=spark)
    running = Running()
    execution = executor.start(launch(tmp_path, HEADER + "x = 1"), running)
    assert spark.entered.wait(10)

    execution.cancel()
    outcome = execution.wait(2)
    assert outcome is not None and outcome.result_state == RunResultState.CANCELED

    spark.gate.set()  # the server comes up after all: its lease must go straight back
    deadline = time.monotonic() + 10
    while not spark.leases:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert spark.leases[0].released.wait(10)
    assert not running.event.is_set()
    assert not (tmp_path / "runs/1/task.json").exists()
    executor.close()
    assert not spark.closed  # the provider belongs to whoever made it


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a parent that is not this test."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_alive_helper_sees_this_process() -> None:
    assert _alive(os.getpid())


def test_fork_server_takes_its_drivers_along_when_the_executor_goes(tmp_path: Path) -> None:
    from aml_databricks.compute.host.forkserver import DriverForkServer

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    task = {
        "kind": "notebook",
        "path": "/nb",
        "source": HEADER + "import time\ntime.sleep(300)",
        "parameters": {},
        "fs": {"dbfs_root": str(tmp_path / "dbfs"), "volumes_root": str(tmp_path / "volumes")},
    }
    (run_dir / "task.json").write_text(json.dumps(task))
    server = DriverForkServer()
    output_read, output_write = os.pipe()
    secrets_read, secrets_write = os.pipe()
    try:
        driver = server.spawn(str(run_dir), str(run_dir), dict(os.environ), output_write, secrets_write)
        assert _alive(driver.pid)
        with pytest.raises(subprocess.TimeoutExpired):
            driver.wait(0.2)
    finally:
        for fd in (output_read, output_write, secrets_read, secrets_write):
            os.close(fd)
        server.close()  # as when the workspace process ends: its socket closes

    driver.wait(5)
    assert not _alive(driver.pid)


def test_a_forked_driver_can_be_waited_for_from_many_threads_at_once() -> None:
    # The run thread and a cancelling request thread wait on one driver together; whichever sees the
    # exit first must not pull the descriptor from under the other.
    from aml_databricks.compute.host.forkserver import ForkedDriver

    errors: list[BaseException] = []
    for _ in range(50):
        child = subprocess.Popen(["sleep", "30"])
        driver = ForkedDriver(child.pid, os.pidfd_open(child.pid))

        def wait(driver: ForkedDriver = driver) -> None:
            try:
                driver.wait(10)
            except BaseException as error:  # collected and asserted below
                errors.append(error)

        waiters = [threading.Thread(target=wait) for _ in range(8)]
        child.kill()
        child.wait()
        for waiter in waiters:  # all racing to notice an exit that has already happened
            waiter.start()
        for waiter in waiters:
            waiter.join(15)
        assert driver.exited
    assert errors == []


def test_a_standby_session_id_is_swapped_into_a_remote_and_read_back() -> None:
    from aml_databricks.compute.host.standby import session_of, with_session

    remote = "sc://127.0.0.1:15002/;session_id=aaa;user_id=aml-databricks"
    swapped = with_session(remote, "bbb")
    assert swapped == "sc://127.0.0.1:15002/;session_id=bbb;user_id=aml-databricks"
    assert session_of(swapped) == "bbb" and session_of("sc://127.0.0.1:15002") is None
