"""`/dbfs/...` and `/Volumes/...` for all code of a run: a Python file task and a library it imports,
through `open`, `pathlib`, `os` and pandas, as Databricks' FUSE mounts give them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import RunResultState, SparkPythonTask, SubmitTask

from aml_databricks.workspace import LocalWorkspace

WAIT = timedelta(seconds=60)

LIBRARY = '''
import os
import pathlib


def summarize(folder):
    names = sorted(os.listdir(folder))
    with open(os.path.join(folder, "in.txt")) as f:
        first = f.read().strip()
    pathlib.Path("/Volumes/main/default/vol/out").mkdir(parents=True, exist_ok=True)
    pathlib.Path("/Volumes/main/default/vol/out/summary.txt").write_text(f"{first} {names}")
    return os.path.exists("/dbfs/landing/in.txt")
'''

MAIN = '''
import sys
sys.path.insert(0, sys.argv[1])
import dbfs_library

assert dbfs_library.summarize("/dbfs/landing")
import os
os.rename("/dbfs/landing/in.txt", "/dbfs/landing/moved.txt")
print("files:", sorted(os.listdir("/dbfs/landing")))
'''


def test_a_python_file_and_its_library_see_dbfs_and_volumes(client: WorkspaceClient, workspace: LocalWorkspace,
                                                            tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "dbfs_library.py").write_text(LIBRARY)
    (tmp_path / "main.py").write_text(MAIN)
    landing = workspace.data_dir / "dbfs" / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "in.txt").write_text("hello\n")

    run = client.jobs.submit(run_name="dbfs everywhere", tasks=[SubmitTask(
        task_key="main", existing_cluster_id="local",
        spark_python_task=SparkPythonTask(python_file=str(tmp_path / "main.py"),
                                          parameters=[str(tmp_path / "lib")]))]).result(timeout=WAIT)

    output = client.jobs.get_run_output(run.tasks[0].run_id)
    assert run.state.result_state == RunResultState.SUCCESS, output.error_trace
    summary = workspace.data_dir / "volumes" / "main" / "default" / "vol" / "out" / "summary.txt"
    assert summary.read_text() == "hello ['in.txt']"
    assert (landing / "moved.txt").exists() and not (landing / "in.txt").exists()
    assert "files: ['moved.txt']" in (output.logs or "")
