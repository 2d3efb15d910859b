"""kill -9 of `workspace serve` leaves no process of its behind: JVMs, fork server, drivers, standbys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.service.jobs import NotebookTask, RunLifeCycleState, SparkPythonTask, SubmitTask

from aml_databricks.compute.host import procs
from tests.fixtures_workspace import upload_notebook

pytestmark = [pytest.mark.server, pytest.mark.subprocess]

TOKEN = "dapi-orphan-test"
DEATH_DEADLINE_S = 5.0  # the guarantee: every descendant ends within 5 s of the workspace


def serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aml_databricks.cli", "workspace", "serve", "--port", "0",
         "--data-dir", str(data_dir), "--token", TOKEN, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Local Databricks workspace at" in line:
            return process, line.split(" at ")[1].strip()
    raise AssertionError(f"the workspace did not start: exit {process.wait()}")


def descendants(root: int) -> set[int]:
    """Every live process below `root` (by parent pid), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def living(pids: set[int]) -> set[int]:
    """The ones still running (a zombie has ended: only its reaping is left)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.fixture
def tracked() -> Iterator[set[int]]:
    """Pids to end after the test: the workspace and what it started, so a failure leaks no JVM."""
    pids: set[int] = set()
    yield pids
    left = {child for root in living(pids) for child in descendants(root)}
    for pid in living(pids | left):
        os.kill(pid, signal.SIGKILL)


def kill_and_wait(process: subprocess.Popen[str], tracked: set[int]) -> set[int]:
    """kill -9 the workspace; the descendants (taken before the kill) still alive after the deadline."""
    tracked.update(descendants(process.pid))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    tracked.discard(process.pid)  # reaped: its pid may be reused
    deadline = time.monotonic() + DEATH_DEADLINE_S
    while living(tracked) and time.monotonic() < deadline:
        time.sleep(0.1)
    return living(tracked)


def running(client: WorkspaceClient, notebook: str) -> int:
    run = client.jobs.submit(run_name="in flight", tasks=[SubmitTask(
        task_key="t", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=notebook))])
    while True:
        state = client.jobs.get_run(run.run_id).state
        assert state.life_cycle_state in (
            RunLifeCycleState.QUEUED, RunLifeCycleState.PENDING, RunLifeCycleState.RUNNING), state
        if state.life_cycle_state == RunLifeCycleState.RUNNING:
            return run.run_id
        time.sleep(0.1)


def connect(host: str) -> WorkspaceClient:
    return WorkspaceClient(config=Config(host=host, token=TOKEN, auth_type="pat", retry_timeout_seconds=30))


@pytest.mark.spark
def test_kill_9_with_spark_and_a_run_in_flight_leaves_nothing(tmp_path: Path, tracked: set[int]) -> None:
    process, host = serve(tmp_path / "data")
    tracked.add(process.pid)
    client = connect(host)
    notebook = upload_notebook(
        client, "/Users/me/busy",
        "spark.range(10).count()\nimport subprocess\nsubprocess.Popen(['sleep', '300'])\n"
        "import time\ntime.sleep(300)\n",
    )
    running(client, notebook)
    before = descendants(process.pid)
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in before}
    assert any(b"SparkConnectServer" in c for c in commands.values()), "no Spark server was started"
    assert any(b"forkserver" in c for c in commands.values()), "no fork server was started"

    left = kill_and_wait(process, tracked)

    assert not left, f"outlived the workspace: {[commands.get(pid, b'?')[:80] for pid in left]}"


def test_kill_9_without_spark_leaves_no_driver(tmp_path: Path, tracked: set[int]) -> None:
    process, host = serve(tmp_path / "data", "--no-spark")
    tracked.add(process.pid)
    client = connect(host)
    notebook = upload_notebook(client, "/Users/me/slow", "import time\ntime.sleep(300)\n")
    running(client, notebook)
    assert descendants(process.pid), "no driver process was started"

    assert not kill_and_wait(process, tracked)


def sleeps(marker: str) -> set[int]:
    """Live `sleep <marker>...` processes anywhere on the machine: a `%sh` command's background job is
    reparented away from the workspace as soon as its shell exits."""
    found = {pid for pid, args in procs.command_lines(marker).items() if args[0] == "sleep"}
    return living(found)


def test_kill_9_without_spark_leaves_nothing_a_driver_started(tmp_path: Path, tracked: set[int]) -> None:
    # What a driver starts outlives it unless someone ends it: a `%sh` command sent to the background,
    # a Python-file task's subprocess, and one that made a process group of its own.
    process, host = serve(tmp_path / "data", "--no-spark")
    tracked.add(process.pid)
    client = connect(host)
    marker = f"1000.{os.getpid()}{time.monotonic_ns() % 10**6}"  # sleep takes a fraction: ours alone
    notebook = upload_notebook(
        client, "/Users/me/background",
        f"# MAGIC %sh\n# MAGIC sleep {marker}1 &\n\n# COMMAND ----------\n\nimport time\ntime.sleep(300)\n",
    )
    script = tmp_path / "spawns.py"
    script.write_text("import subprocess, time\n"
                      f"subprocess.Popen(['sleep', '{marker}2'])\n"
                      f"subprocess.Popen(['sleep', '{marker}3'], process_group=0)\n"
                      "time.sleep(300)\n")
    running(client, notebook)
    client.jobs.submit(run_name="python file", tasks=[SubmitTask(
        task_key="t", existing_cluster_id="local", spark_python_task=SparkPythonTask(python_file=str(script)))])
    deadline = time.monotonic() + 120
    while len(sleeps(marker)) < 3:
        assert time.monotonic() < deadline, f"the sleeps did not start: {sleeps(marker)}"
        time.sleep(0.1)
    tracked.update(sleeps(marker))

    left = kill_and_wait(process, tracked)

    assert not left, f"outlived the workspace: {[Path(f'/proc/{pid}/cmdline').read_bytes() for pid in left]}"
