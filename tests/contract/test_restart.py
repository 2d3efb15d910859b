"""SIGKILL the workspace mid-run and start it again on the same data dir."""

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
from databricks.sdk.service.jobs import NotebookTask, RunLifeCycleState, RunResultState, SubmitTask

from tests.fixtures_workspace import upload_notebook

pytestmark = pytest.mark.server

TOKEN = "dapi-restart-test"


def serve(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aml_databricks.cli", "workspace", "serve", "--no-spark", "--port", "0",
         "--data-dir", str(data_dir), "--token", TOKEN],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Local Databricks workspace at" in line:
            return process, line.split(" at ")[1].strip()
    raise AssertionError(f"the workspace did not start: exit {process.wait()}")


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def connect(host: str) -> WorkspaceClient:
    return WorkspaceClient(config=Config(host=host, token=TOKEN, auth_type="pat", retry_timeout_seconds=10))


def test_sigkill_mid_run_then_restart(tmp_path: Path, servers: list[subprocess.Popen[str]]) -> None:
    data_dir = tmp_path / "data"
    process, host = serve(data_dir)
    servers.append(process)
    client = connect(host)
    done = upload_notebook(client, "/Users/me/quick", 'dbutils.notebook.exit("kept")\n')
    slow = upload_notebook(client, "/Users/me/slow", "import time\ntime.sleep(300)\n")
    finished = client.jobs.submit(run_name="quick", tasks=[SubmitTask(
        task_key="t", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=done))]).result()
    in_flight = client.jobs.submit(run_name="slow", tasks=[SubmitTask(
        task_key="t", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=slow))])
    while client.jobs.get_run(in_flight.run_id).state.life_cycle_state != RunLifeCycleState.RUNNING:
        time.sleep(0.05)

    os.kill(process.pid, signal.SIGKILL)  # the server only, as a crash would: its driver is orphaned
    process.wait()
    process, host = serve(data_dir)
    servers.append(process)
    client = connect(host)

    kept = client.jobs.get_run(finished.run_id)
    assert kept.state.result_state == RunResultState.SUCCESS
    assert client.jobs.get_run_output(kept.tasks[0].run_id).notebook_output.result == "kept"
    assert client.workspace.download(slow).read().decode().endswith("time.sleep(300)\n")
    lost = client.jobs.get_run(in_flight.run_id)
    assert lost.state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR
    assert "restarted" in lost.state.state_message
    assert lost.tasks[0].state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR
    assert not _driver_alive(data_dir, lost.tasks[0].run_id), "the orphaned driver was not ended"


def _driver_alive(data_dir: Path, task_run_id: int) -> bool:
    pid_file = data_dir / "runs" / str(task_run_id) / "driver.pid"
    if not pid_file.exists():
        return False
    try:
        status = Path(f"/proc/{int(pid_file.read_text())}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended; only its parent's reaping is left
