"""What the workspace writes that holds run output or its token is its user's alone, whatever the umask."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.service.jobs import NotebookTask, RunResultState, SubmitTask

from tests.fixtures_workspace import upload_notebook

pytestmark = [pytest.mark.server, pytest.mark.subprocess]

TOKEN = "dapi-modes-test"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_output_server_marker_and_token_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "aml_databricks.cli", "workspace", "serve", "--no-spark", "--port", "0",
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, umask=0o022,
    )
    try:
        assert process.stdout is not None
        host = next(line for line in process.stdout if "Local Databricks workspace at" in line).split(" at ")[1]
        token = (data_dir / "token").read_text().strip()
        client = WorkspaceClient(config=Config(host=host.strip(), token=token, auth_type="pat"))
        notebook = upload_notebook(client, "/Users/me/talk", "print('the output')\n")
        run = client.jobs.submit(run_name="talk", tasks=[SubmitTask(
            task_key="t", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=notebook))]).result()
        assert run.state.result_state == RunResultState.SUCCESS
        run_dir = data_dir / "runs" / str(run.tasks[0].run_id)
        assert "the output" in (run_dir / "output.log").read_text()

        assert mode(data_dir) == 0o700
        assert mode(data_dir / "runs") == 0o700
        assert mode(run_dir) == 0o700
        for name in ("output.log", "driver.pid"):
            assert mode(run_dir / name) == 0o600, name
        for name in ("server.json", "token", "workspace.db"):
            assert mode(data_dir / name) == 0o600, name
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert not os.path.exists(data_dir / "server.json")
