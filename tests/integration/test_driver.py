"""The task driver as the executor runs it: a real subprocess on a run folder, without Spark or API."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.subprocess


@dataclass
class DriverRun:
    result: dict[str, Any]
    output: str
    exit_code: int


def notebook(*cells: str) -> str:
    return "# Databricks notebook source\n" + "\n\n# COMMAND ----------\n\n".join(cells) + "\n"


@pytest.fixture
def fs(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "datastore").mkdir()
    (tmp_path / "lake").mkdir()
    return {
        "dbfs_root": str(tmp_path / "dbfs"),
        "volumes_root": str(tmp_path / "volumes"),
        "mounts": {"/mnt/azuremlblobstore": str(tmp_path / "datastore")},
        "storage": {"abfss://raw@lakeacct.dfs.core.windows.net": str(tmp_path / "lake")},
    }


def run_driver(
    tmp_path: Path,
    fs: dict[str, Any],
    source: str | None,
    *,
    kind: str = "notebook",
    parameters: dict[str, str] | list[str] | None = None,
    path: str = "/Users/me/nb",
    language: str = "PYTHON",
) -> DriverRun:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    task = {
        "run_id": 7,
        "parent_run_id": 6,
        "task_key": "main",
        "kind": kind,
        "path": path,
        "source": source,
        "language": language,
        "parameters": parameters if parameters is not None else ({} if kind == "notebook" else []),
        "api": None,
        "spark": None,
        "fs": fs,
        "python_path": [],
    }
    (run_dir / "task.json").write_text(json.dumps(task))
    with open(run_dir / "output.log", "wb") as log:
        completed = subprocess.run(
            [sys.executable, "-m", "aml_databricks.compute.driver", str(run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            timeout=60,
        )
    result = json.loads((run_dir / "result.json").read_text())
    return DriverRun(result, (run_dir / "output.log").read_text(), completed.returncode)


def test_widget_defaults_parameters_and_get_argument(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = notebook(
        'dbutils.widgets.text("folder", "default-folder")\n'
        'dbutils.widgets.dropdown("mode", "a", ["a", "b"])\n'
        'dbutils.widgets.multiselect("cols", "x", ["x", "y"])',
        "values = dict(dbutils.widgets.getAll())\n"
        'values["missing"] = getArgument("missing", "fallback")\n'
        'values["get_mode"] = dbutils.widgets.get("mode")\n'
        "dbutils.notebook.exit(json.dumps(values, sort_keys=True))",
    )
    run = run_driver(tmp_path, fs, "import json\n" + source.split("\n", 1)[1], parameters={"mode": "b", "extra": "1"})

    assert run.result["result_state"] == "SUCCESS", run.result
    assert json.loads(run.result["notebook_result"]) == {
        "folder": "default-folder",
        "mode": "b",
        "cols": "x",
        "extra": "1",
        "missing": "fallback",
        "get_mode": "b",
    }
    assert run.exit_code == 0


def test_undefined_widget_fails_like_databricks(tmp_path: Path, fs: dict[str, Any]) -> None:
    run = run_driver(tmp_path, fs, notebook('dbutils.widgets.get("nope")'))

    assert run.result["result_state"] == "FAILED"
    assert run.result["error"] == "InputWidgetNotDefined: No input widget named nope is defined"
    assert run.exit_code == 1


def test_exit_value_and_its_5_mb_cap(tmp_path: Path, fs: dict[str, Any]) -> None:
    run = run_driver(tmp_path, fs, notebook('dbutils.notebook.exit("x" * (6 * 1024 * 1024))', "raise SystemExit(9)"))

    assert run.result["result_state"] == "SUCCESS"
    assert run.result["truncated"] is True
    assert len(run.result["notebook_result"]) == 5 * 1024 * 1024

    small = run_driver(tmp_path, fs, notebook('dbutils.notebook.exit("ok")'))
    assert (small.result["notebook_result"], small.result["truncated"]) == ("ok", False)


def test_exit_is_not_swallowed_by_except_exception(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = notebook(
        'try:\n    dbutils.notebook.exit("done")\nexcept Exception:\n    pass', 'raise RuntimeError("not reached")'
    )
    run = run_driver(tmp_path, fs, source)

    assert (run.result["result_state"], run.result["notebook_result"]) == ("SUCCESS", "done")


def test_no_exit_means_success_without_result(tmp_path: Path, fs: dict[str, Any]) -> None:
    run = run_driver(tmp_path, fs, notebook("x = 1", "# MAGIC %md\n# MAGIC notes", "print(x + 1)"))

    assert run.result == {
        "result_state": "SUCCESS",
        "notebook_result": None,
        "truncated": False,
        "error": None,
        "error_trace": None,
    }
    assert run.output == "2\n"


def test_failing_cell_trace_names_cell_and_notebook_line(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = notebook(
        "total = 0",
        "# MAGIC %md\n# MAGIC Some notes",
        "def ratio(n):\n    return n / total\n\nprint(ratio(1))",
    )
    lines = source.split("\n")
    run = run_driver(tmp_path, fs, source)

    assert run.result["result_state"] == "FAILED"
    assert run.result["error"] == "ZeroDivisionError: division by zero"
    trace = run.result["error_trace"]
    call_line = lines.index("print(ratio(1))") + 1
    raise_line = lines.index("    return n / total") + 1
    assert f'File "<notebook /Users/me/nb, cell 3>", line {call_line}, in <module>' in trace
    assert f'File "<notebook /Users/me/nb, cell 3>", line {raise_line}, in ratio' in trace
    assert "return n / total" in trace  # the source line is shown
    assert "driver.py" not in trace  # the driver's own frames are left out


def test_magic_python_cell_lines_and_syntax_errors(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = "-- Databricks notebook source\n-- MAGIC %python\n-- MAGIC x = 1\n-- MAGIC y = (\n"
    run = run_driver(tmp_path, fs, source, language="SQL")

    assert run.result["error"].startswith("SyntaxError: ")
    assert 'File "<notebook /Users/me/nb, cell 1>", line 4' in run.result["error_trace"]


def test_sql_cell_without_spark_fails_naming_the_cell(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = notebook("x = 1", "# MAGIC %sql\n# MAGIC SELECT 1")
    run = run_driver(tmp_path, fs, source)

    assert run.result["error"] == "CellError: %sql needs Spark, and this run has no cluster"
    assert 'File "<notebook /Users/me/nb, cell 2>", line 7, in %sql' in run.result["error_trace"]


def test_sh_cell_output_and_exit_status(tmp_path: Path, fs: dict[str, Any]) -> None:
    ok = run_driver(tmp_path, fs, notebook("print('before', flush=True)", "# MAGIC %sh\n# MAGIC echo from-shell"))
    assert ok.result["result_state"] == "SUCCESS"
    assert ok.output == "before\nfrom-shell\n"

    failing = run_driver(tmp_path, fs, notebook("# MAGIC %sh\n# MAGIC echo partial\n# MAGIC exit 3"))
    assert failing.result["error"] == "CellError: %sh command exited with code 3"
    assert "partial" in failing.output


def test_pip_cell_prints_a_notice_and_installs_nothing(tmp_path: Path, fs: dict[str, Any]) -> None:
    run = run_driver(tmp_path, fs, notebook("# MAGIC %pip install does-not-exist-xyz"))

    assert run.result["result_state"] == "SUCCESS"
    assert "%pip is not run by the local workspace" in run.output
    assert "%pip install does-not-exist-xyz" in run.output


def test_python_file_argv_and_exit_codes(tmp_path: Path, fs: dict[str, Any]) -> None:
    script = "import sys\nprint(__name__, sys.argv)\nif len(sys.argv) > 2:\n    sys.exit(int(sys.argv[2]))\n"
    ok = run_driver(tmp_path, fs, script, kind="python", path="/Users/me/job.py", parameters=["--n", "0"])
    assert ok.result["result_state"] == "SUCCESS"
    assert ok.output == "__main__ ['/Users/me/job.py', '--n', '0']\n"

    failed = run_driver(tmp_path, fs, script, kind="python", path="/Users/me/job.py", parameters=["--n", "3"])
    assert failed.result["result_state"] == "FAILED"
    assert failed.result["error"] == "SystemExit: 3"

    plain = run_driver(tmp_path, fs, "import sys\nsys.exit()\n", kind="python", path="/x.py")
    assert plain.result["result_state"] == "SUCCESS"

    raising = run_driver(tmp_path, fs, "def main():\n    raise KeyError('k')\n\nmain()\n", kind="python", path="/x.py")
    assert raising.result["error"] == "KeyError: 'k'"
    assert 'File "/x.py", line 4, in <module>' in raising.result["error_trace"]
    assert 'File "/x.py", line 2, in main' in raising.result["error_trace"]


def test_python_file_read_from_a_local_path(tmp_path: Path, fs: dict[str, Any]) -> None:
    (tmp_path / "job_helpers.py").write_text("GREETING = 'hi'\n")
    script = tmp_path / "local_job.py"
    script.write_text("import sys\nfrom job_helpers import GREETING\nprint(GREETING, sys.argv[1:])\n")
    run = run_driver(tmp_path, fs, None, kind="python", path=str(script), parameters=["a"])

    assert run.result["result_state"] == "SUCCESS", run.result
    assert run.output == "hi ['a']\n"


def test_secret_values_are_redacted_from_the_result(tmp_path: Path, fs: dict[str, Any]) -> None:
    # dbutils.secrets.get needs the API (tests/e2e); here the value goes into the run's redaction set
    # directly. The output stream is redacted by the executor: test_process_executor.py.
    source = notebook(
        'secret = "s3cr3t-value"\ndbutils.secrets._context.redactor.add(secret)',
        'raise ValueError("bad " + secret)',
    )
    run = run_driver(tmp_path, fs, source)

    assert run.result["error"] == "ValueError: bad [REDACTED]"
    assert "s3cr3t-value" not in run.result["error_trace"]

    exiting = run_driver(
        tmp_path, fs, notebook('dbutils.secrets._context.redactor.add("tok")\ndbutils.notebook.exit("a tok b")')
    )
    assert exiting.result["notebook_result"] == "a [REDACTED] b"


def test_fs_maps_dbfs_mounts_volumes_and_storage(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = notebook(
        'dbutils.fs.put("dbfs:/data/a.txt", "dbfs file")\n'
        'dbutils.fs.put("/mnt/azuremlblobstore/out/b.txt", "mounted")\n'
        'dbutils.fs.put("/Volumes/main/default/vol/c.txt", "volume")\n'
        'dbutils.fs.put("abfss://raw@lakeacct.dfs.core.windows.net/in/d.txt", "lake")\n'
        'dbutils.fs.put("wasbs://raw@lakeacct.blob.core.windows.net/in/e.txt", "same container")',
        'with open("/dbfs/data/a.txt") as f:\n    print("open:", f.read())\n'
        'print("head:", dbutils.fs.head("/data/a.txt"))\n'
        'print("ls:", [(i.name, i.size, i.isDir()) for i in dbutils.fs.ls("dbfs:/data")])\n'
        'print("ls abfss:", [i.path for i in dbutils.fs.ls("abfss://raw@lakeacct.dfs.core.windows.net/in")])',
        'dbutils.fs.cp("dbfs:/data/a.txt", "dbfs:/copy/a.txt")\n'
        'dbutils.fs.mkdirs("/tree/x")\ndbutils.fs.put("/tree/x/f.txt", "f")\n'
        'dbutils.fs.cp("/tree", "/tree2", recurse=True)\n'
        'dbutils.fs.mv("/tree2/x/f.txt", "/moved.txt")\n'
        'print("rm missing:", dbutils.fs.rm("/nothing-here"))\n'
        'dbutils.fs.rm("/tree", recurse=True)\n'
        'try:\n    dbutils.fs.put("dbfs:/data/a.txt", "again")\nexcept FileExistsError:\n    print("exists")\n'
        'dbutils.fs.put("dbfs:/data/a.txt", "again", overwrite=True)',
    )
    run = run_driver(tmp_path, fs, source)

    assert run.result["result_state"] == "SUCCESS", run.result
    root = tmp_path
    assert (root / "dbfs/data/a.txt").read_text() == "again"
    assert (root / "datastore/out/b.txt").read_text() == "mounted"
    assert (root / "volumes/main/default/vol/c.txt").read_text() == "volume"
    assert (root / "lake/in/d.txt").read_text() == "lake"
    assert (root / "lake/in/e.txt").read_text() == "same container"
    assert (root / "dbfs/copy/a.txt").read_text() == "dbfs file"
    assert (root / "dbfs/moved.txt").read_text() == "f"
    assert not (root / "dbfs/tree").exists()
    assert "open: dbfs file" in run.output
    assert "head: dbfs file" in run.output
    assert "ls: [('a.txt', 9, False)]" in run.output
    assert (
        "ls abfss: ['abfss://raw@lakeacct.dfs.core.windows.net/in/d.txt', "
        "'abfss://raw@lakeacct.dfs.core.windows.net/in/e.txt']" in run.output
    )
    assert "Wrote 9 bytes." in run.output
    assert "rm missing: False" in run.output
    assert "exists" in run.output


def test_fs_mount_at_run_time(tmp_path: Path, fs: dict[str, Any]) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    source = notebook(
        f'dbutils.fs.mount(source="file://{extra}", mount_point="/mnt/extra")\n'
        'dbutils.fs.put("/mnt/extra/x.txt", "via mount")\n'
        "print(sorted(m.mountPoint for m in dbutils.fs.mounts()))\n"
        'try:\n    dbutils.fs.mount("file:///tmp", "/mnt/extra")\nexcept Exception as e:\n    print(e)\n'
        'dbutils.fs.unmount("/mnt/extra")\n'
        'dbutils.fs.mount(source="abfss://raw@lakeacct.dfs.core.windows.net/sub", mount_point="/mnt/raw")\n'
        'dbutils.fs.put("/mnt/raw/y.txt", "lake mount")',
    )
    run = run_driver(tmp_path, fs, source)

    assert run.result["result_state"] == "SUCCESS", run.result
    assert (extra / "x.txt").read_text() == "via mount"
    assert (tmp_path / "lake/sub/y.txt").read_text() == "lake mount"
    assert "['/', '/Volumes', '/mnt/azuremlblobstore', '/mnt/extra']" in run.output
    assert "Directory already mounted: /mnt/extra" in run.output
    assert "/mnt/extra has been unmounted." in run.output


def test_unmapped_storage_account_is_a_clear_error(tmp_path: Path, fs: dict[str, Any]) -> None:
    run = run_driver(tmp_path, fs, notebook('dbutils.fs.ls("abfss://other@acct.dfs.core.windows.net/x")'))

    assert run.result["error"].startswith("PathNotMappedError: no local folder for container 'other'")


def test_api_calls_without_an_api_fail_clearly(tmp_path: Path, fs: dict[str, Any]) -> None:
    run = run_driver(tmp_path, fs, notebook('dbutils.secrets.get("s", "k")'))
    assert run.result["error"] == (
        "RuntimeError: dbutils.secrets needs the workspace API, and this run was started without one"
    )
    debug = run_driver(
        tmp_path, fs, notebook('dbutils.notebook.exit(dbutils.jobs.taskValues.get("t", "k", debugValue=5))')
    )
    assert debug.result["notebook_result"] == "5"


def test_threads_left_running_do_not_keep_the_run_alive(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = notebook("import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()")
    run = run_driver(tmp_path, fs, source)  # run_driver's timeout would fail the test

    assert run.result["result_state"] == "SUCCESS"


def test_ipynb_source_runs(tmp_path: Path, fs: dict[str, Any]) -> None:
    document = {
        "cells": [
            {"cell_type": "code", "source": ["x = 40\n"], "metadata": {}, "outputs": []},
            {"cell_type": "markdown", "source": ["# notes"], "metadata": {}},
            {"cell_type": "code", "source": ["dbutils.notebook.exit(str(x + 2))"], "metadata": {}, "outputs": []},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 2,
    }
    run = run_driver(tmp_path, fs, json.dumps(document))

    assert run.result["notebook_result"] == "42"


def test_broken_task_file_still_gets_a_result(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "task.json").write_text("{not json")
    subprocess.run(
        [sys.executable, "-m", "aml_databricks.compute.driver", str(run_dir)], capture_output=True, timeout=60
    )
    result = json.loads((run_dir / "result.json").read_text())

    assert result["result_state"] == "FAILED"
    assert result["error"].startswith("JSONDecodeError: ")
    assert (run_dir / "result.json").stat().st_mode & 0o777 == 0o600


def test_notebook_context_through_the_entry_point(tmp_path: Path, fs: dict[str, Any]) -> None:
    source = notebook(
        "context = dbutils.notebook.entry_point.getDbutils().notebook().getContext()\n"
        "values = [context.notebookPath().get(), context.currentRunId().get(), context.tags().apply('taskKey'),\n"
        "          context.tags().get('multitaskParentRunId').get(), context.apiToken().isDefined()]\n"
        "dbutils.notebook.exit(repr(values))"
    )
    run = run_driver(tmp_path, fs, source)

    assert run.result["notebook_result"] == "['/Users/me/nb', 7, 'main', '6', False]"
