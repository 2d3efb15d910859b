"""Per-cell outputs of notebook runs: what `display()` records, runs/export through databricks-sdk, and
the run page's sign-in, over a live local workspace on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import NotebookTask, Run, SubmitTask, ViewsToExport, ViewType

from aml_databricks.compute.driver.outputs import read_outputs
from aml_databricks.compute.host.pool import ClusterPool
from aml_databricks.compute.host.process import DriverExecutor
from aml_databricks.workspace import LocalWorkspace
from aml_databricks.workspace.pages.auth import login_url
from aml_databricks.workspace.pages.views import cells_of
from tests.fixtures_workspace import upload_notebook

pytestmark = pytest.mark.server

WAIT = timedelta(seconds=120)
SEP = "\n\n# COMMAND ----------\n\n"


def submit(client: WorkspaceClient, path: str) -> Run:
    task = SubmitTask(task_key="main", notebook_task=NotebookTask(notebook_path=path), existing_cluster_id="local")
    return client.jobs.submit(run_name=path, tasks=[task]).result(timeout=WAIT)


def cells(workspace: LocalWorkspace, run: Run) -> list[dict]:
    assert run.tasks is not None
    return cells_of(read_outputs(workspace.data_dir / "runs" / str(run.tasks[0].run_id)))


def test_pandas_display_and_print_are_recorded_per_cell(client: WorkspaceClient, workspace: LocalWorkspace) -> None:
    source = SEP.join([
        'print("first cell")',
        'import pandas as pd\ndisplay(pd.DataFrame({"city": ["Oslo", "Lima"], "pop": [709, 10_000]}))',
        'raise ValueError("second half fails")',
        'print("never")',
    ])
    run = submit(client, upload_notebook(client, "/Shared/outputs/pandas", source))

    recorded = cells(workspace, run)
    assert [c["status"] for c in recorded] == ["ok", "ok", "error", "not run"]
    assert recorded[0]["outputs"][0] == {"type": "output", "cell": 0, "kind": "stdout", "text": "first cell\n"}
    (table,) = [o for o in recorded[1]["outputs"] if o["kind"] == "table"]
    assert table["columns"] == [["city", "object"], ["pop", "int64"]]
    assert table["rows"] == [["Oslo", 709], ["Lima", 10000]] and table["row_count"] == 2
    (error,) = recorded[2]["outputs"]
    assert error["error"] == "ValueError: second half fails" and "cell 3" in error["trace"]


def test_runs_export_returns_the_notebook_with_its_outputs(client: WorkspaceClient) -> None:
    source = SEP.join(['print("<script>alert(1)</script>")', 'dbutils.notebook.exit("done")'])
    run = submit(client, upload_notebook(client, "/Shared/outputs/exported", source))
    assert run.tasks is not None

    exported = client.jobs.export_run(run.tasks[0].run_id, views_to_export=ViewsToExport.CODE)
    dashboards = client.jobs.export_run(run.tasks[0].run_id, views_to_export=ViewsToExport.DASHBOARDS)

    assert exported.views is not None
    (view,) = exported.views
    assert view.type == ViewType.NOTEBOOK and view.name == "exported"
    assert view.content is not None and view.content.startswith("<!doctype html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in view.content and "<script>alert" not in view.content
    assert "done" in view.content
    assert dashboards.views == []


def test_run_page_needs_the_token_and_escapes_outputs(client: WorkspaceClient, workspace: LocalWorkspace) -> None:
    run = submit(client, upload_notebook(client, "/Shared/outputs/probe", 'print("<script>probe()</script>")'))

    with httpx.Client(base_url=workspace.host) as browser:
        anonymous = browser.get(f"/runs/{run.run_id}")
        wrong = browser.get("/login", params={"token": "dapi-not-it"})
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
        assert wrong.status_code == 403 and "cookie" not in {k.lower() for k in wrong.headers}
        assert browser.get(f"/runs/{run.run_id}/body").status_code == 401
        assert browser.post(f"/runs/{run.run_id}/cancel").status_code == 401

        signed_in = browser.get(login_url(workspace.host, workspace.token).removeprefix(workspace.host))
        cookie = signed_in.headers["set-cookie"]
        page = browser.get(f"/runs/{run.run_id}")

    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and workspace.token not in cookie
    assert page.status_code == 200
    assert "&lt;script&gt;probe()&lt;/script&gt;" in page.text and "<script>probe" not in page.text


@pytest.mark.subprocess
def test_workspace_serve_prints_a_sign_in_link_that_opens_the_pages(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "aml_databricks.cli", "workspace", "serve", "--no-spark", "--port", "0",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        link = next((line.split("pages: ", 1)[1].strip() for line in process.stdout if "pages: " in line), None)
        assert link is not None, f"no sign-in link printed: exit {process.poll()}"
        with httpx.Client() as browser:
            host = link.split("/login")[0]
            assert browser.get(f"{host}/").status_code == 303  # not signed in yet
            assert browser.get(link).status_code == 303
            home = browser.get(f"{host}/")
        assert home.status_code == 200 and "Runs" in home.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


# --- on Spark -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_workspace(spark_pool: ClusterPool, spark_data_dir: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(spark_data_dir, executor=DriverExecutor(spark_data_dir, spark=spark_pool)) as workspace:
        yield workspace


@pytest.mark.spark
def test_dataframe_display_method_records_a_table(spark_workspace: LocalWorkspace) -> None:
    client = spark_workspace.client
    source = SEP.join([
        'df = spark.createDataFrame([(1, "a"), (2, None)], "id INT, label STRING")\ndf.display()',
        "display(spark.range(1005))",
        "import pyspark.pandas as ps\ndisplay(ps.DataFrame({'x': [1.5, 2.5]}))",
        "# MAGIC %sql\n# MAGIC SELECT 'sql' AS source, 7 AS n",
    ])
    run = submit(client, upload_notebook(client, "/Shared/outputs/spark_display", source))

    recorded = cells(spark_workspace, run)
    assert [c["status"] for c in recorded] == ["ok", "ok", "ok", "ok"], recorded
    tables = [next(o for o in c["outputs"] if o["kind"] == "table") for c in recorded]
    assert tables[0]["columns"] == [["id", "int"], ["label", "string"]]
    assert tables[0]["rows"] == [[1, "a"], [2, None]]
    assert tables[1]["row_count"] == 1000 and tables[1]["truncated"] is True
    assert tables[2]["rows"] == [[1.5], [2.5]]
    assert tables[3]["columns"] == [["source", "string"], ["n", "int"]] and tables[3]["rows"] == [["sql", 7]]
