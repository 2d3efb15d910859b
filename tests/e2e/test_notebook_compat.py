"""What real public notebooks need (issue #11): nested runs that can't deadlock, files next to the
notebook, Unity Catalog names, SQL widgets, every %fs form, dbutils.help(), and one-line errors.

Driven through databricks-sdk against a live local workspace, as users drive it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import RunResultState

from aml_databricks.workspace import LocalWorkspace
from tests.e2e.test_notebook_features import output_log, run_one, task
from tests.fixtures_workspace import upload_notebook

pytestmark = pytest.mark.server

WAIT = timedelta(seconds=120)
SEP = "\n\n# COMMAND ----------\n\n"


def test_concurrent_parents_never_wait_for_the_slots_they_hold(client: WorkspaceClient) -> None:
    # The session's workspace has 4 task slots: four parents hold all of them while their children run.
    upload_notebook(client, "/Shared/compat/nested/child",
                    'dbutils.notebook.exit("child of " + dbutils.widgets.get("p"))')
    parent = upload_notebook(
        client, "/Shared/compat/nested/parent",
        'dbutils.notebook.exit(dbutils.notebook.run("./child", 30, {"p": dbutils.widgets.get("p")}))',
    )
    waiters = [client.jobs.submit(run_name=f"parent {i}", tasks=[task("main", parent, {"p": str(i)})])
               for i in range(4)]
    runs = [waiter.result(timeout=WAIT) for waiter in waiters]

    results = [client.jobs.get_run_output(run.tasks[0].run_id) for run in runs]
    assert [run.state.result_state for run in runs] == [RunResultState.SUCCESS] * 4, [r.error for r in results]
    assert [r.notebook_output.result for r in results] == [f"child of {i}" for i in range(4)]


def test_notebook_run_with_timeout_zero_has_no_timeout(client: WorkspaceClient) -> None:
    upload_notebook(client, "/Shared/compat/zero/child", "import time\ntime.sleep(1.5)\ndbutils.notebook.exit('slept')")
    parent = upload_notebook(client, "/Shared/compat/zero/parent",
                             'dbutils.notebook.exit(dbutils.notebook.run("./child", 0))')
    output = run_one(client, parent)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "slept"


def test_files_next_to_the_notebook_are_importable_and_readable(client: WorkspaceClient) -> None:
    from databricks.sdk.service.workspace import ImportFormat

    client.workspace.upload("/Shared/compat/repo/my_lib/__init__.py", b"", format=ImportFormat.AUTO, overwrite=True)
    client.workspace.upload("/Shared/compat/repo/my_lib/funcs.py", b"def double(x):\n    return 2 * x\n",
                            format=ImportFormat.AUTO, overwrite=True)
    client.workspace.upload("/Shared/compat/repo/data/rows.csv", b"a,b\n1,2\n", format=ImportFormat.RAW,
                            overwrite=True)
    path = upload_notebook(
        client, "/Shared/compat/repo/analysis",
        "from my_lib.funcs import double\n"
        "rows = open('data/rows.csv').read().splitlines()\n"
        "dbutils.notebook.exit(f'{double(21)} {len(rows)}')",
    )
    output = run_one(client, path)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "42 2"


def test_fs_magic_in_every_documented_form_and_help(client: WorkspaceClient, workspace: LocalWorkspace) -> None:
    path = upload_notebook(
        client, "/Shared/compat/fs_magic",
        'dbutils.fs.put("dbfs:/compat_fs/a.txt", "first", True)'
        + SEP + '# MAGIC %fs put -f /compat_fs/a.txt "replaced"'
        + SEP + "# MAGIC %fs cp -r /compat_fs /compat_fs_copy"
        + SEP + "# MAGIC %fs head /compat_fs_copy/a.txt 4"
        + SEP + "# MAGIC %fs ls"
        + SEP + "# MAGIC %fs help"
        + SEP + "dbutils.help()"
        + SEP + "dbutils.fs.help('cp')",
    )
    run = client.jobs.submit(run_name="fs", tasks=[task("main", path)]).result(timeout=WAIT)
    output = client.jobs.get_run_output(run.tasks[0].run_id)
    log = output_log(workspace, run.tasks[0].run_id)

    assert output.error is None, output.error_trace
    assert "repl\n" in log  # head with a byte count, of the copy made with -r, of the file -f replaced
    assert "dbfs:/compat_fs_copy/" in log  # `%fs ls` alone lists the DBFS root
    assert "mounts()" in log and "cp(from_: str, to: str, recurse: bool = False)" in log
    assert "  fs: " in log and "  notebook: " in log  # dbutils.help() names its modules
