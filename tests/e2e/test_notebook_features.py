"""Notebook features that call back into the workspace (secrets, taskValues, %run, notebook.run) and
that need real Spark (the demo's table -> mount pattern, %sql, DBFS and storage paths, cancel).

Driven through databricks-sdk against a live local workspace, as users drive it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import ClusterSpec
from databricks.sdk.service.jobs import (
    NotebookTask,
    Run,
    RunLifeCycleState,
    RunOutput,
    RunResultState,
    SparkPythonTask,
    SubmitTask,
    TaskDependency,
)

from aml_databricks.compute.host.cluster_specs import DEFAULT_CLUSTER_NAME, local_spark_version
from aml_databricks.compute.host.pool import ClusterPool
from aml_databricks.compute.host.process import DriverExecutor
from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

pytestmark = pytest.mark.server

WAIT = timedelta(seconds=120)
SEP = "\n\n# COMMAND ----------\n\n"


def task(key: str, path: str, params: dict[str, str] | None = None, **extra: object) -> SubmitTask:
    extra.setdefault("existing_cluster_id", "local")
    return SubmitTask(task_key=key, notebook_task=NotebookTask(notebook_path=path, base_parameters=params), **extra)


def run_one(client: WorkspaceClient, path: str, params: dict[str, str] | None = None, **extra: object) -> RunOutput:
    run = client.jobs.submit(run_name=path, tasks=[task("main", path, params, **extra)]).result(timeout=WAIT)
    return client.jobs.get_run_output(run.tasks[0].run_id)


def output_log(workspace: LocalWorkspace, task_run_id: int) -> str:
    return (workspace.data_dir / "runs" / str(task_run_id) / "output.log").read_text()


# --- through the API, without Spark ---------------------------------------------------------------


def test_run_includes_a_sibling_notebook_in_the_same_globals(client: WorkspaceClient) -> None:
    upload_notebook(client, "/Shared/e2e/lib/helpers", 'greeting = "hello " + dbutils.widgets.get("who")\n')
    path = upload_notebook(
        client,
        "/Shared/e2e/main_with_run",
        '# MAGIC %run ./lib/helpers $who="world"' + SEP + "dbutils.notebook.exit(greeting)",
    )
    output = run_one(client, path)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "hello world"


def test_failing_included_notebook_names_its_own_cell(client: WorkspaceClient) -> None:
    upload_notebook(client, "/Shared/e2e/bad_helpers", "x = 1" + SEP + "y = x / 0\n")
    path = upload_notebook(client, "/Shared/e2e/includes_bad", "# MAGIC %run ./bad_helpers")
    output = run_one(client, path)

    assert output.error == "ZeroDivisionError: division by zero"
    assert 'File "<notebook /Shared/e2e/bad_helpers, cell 2>", line 6' in output.error_trace


def test_secret_values_are_redacted(client: WorkspaceClient, workspace: LocalWorkspace) -> None:
    client.secrets.create_scope("e2e-scope")
    client.secrets.put_secret("e2e-scope", "password", string_value="hunter2-very-secret")
    source = (
        'value = dbutils.secrets.get("e2e-scope", "password")\n'
        'print("the value is", value)\n'
        'keys = [s.key for s in dbutils.secrets.list("e2e-scope")]\n'
        "scopes = [s.name for s in dbutils.secrets.listScopes()]\n"
        'assert keys == ["password"] and "e2e-scope" in scopes, (keys, scopes)\n'
        'assert dbutils.secrets.getBytes("e2e-scope", "password") == value.encode()\n'
        'dbutils.notebook.exit("exit " + value)'
    )
    path = upload_notebook(client, "/Shared/e2e/secrets", source)
    run = client.jobs.submit(run_name="secrets", tasks=[task("main", path)]).result(timeout=WAIT)
    output = client.jobs.get_run_output(run.tasks[0].run_id)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "exit [REDACTED]"
    log = output_log(workspace, run.tasks[0].run_id)
    assert "the value is [REDACTED]" in log and "hunter2" not in log


def test_notebook_context_gives_the_api_url_and_a_redacted_token(
    client: WorkspaceClient, workspace: LocalWorkspace
) -> None:
    source = (
        "import json, urllib.request\n"
        "context = dbutils.notebook.entry_point.getDbutils().notebook().getContext()\n"
        "url, token = context.apiUrl().get(), context.apiToken().get()\n"
        'print("token:", token)\n'
        'headers = {"Authorization": "Bearer " + token}\n'
        'request = urllib.request.Request(url + "/api/2.0/secrets/scopes/list", headers=headers)\n'
        "scopes = json.load(urllib.request.urlopen(request))\n"
        'dbutils.notebook.exit(url + " " + str("scopes" in scopes or scopes == {}))'
    )
    path = upload_notebook(client, "/Shared/e2e/context", source)
    run = client.jobs.submit(run_name="context", tasks=[task("main", path)]).result(timeout=WAIT)
    output = client.jobs.get_run_output(run.tasks[0].run_id)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == f"{workspace.host} True"
    assert "token: [REDACTED]" in output_log(workspace, run.tasks[0].run_id)


def test_an_unresolvable_host_fails_at_once_instead_of_minutes_of_retries(client: WorkspaceClient) -> None:
    # urllib3's Retry as MLflow sets it up (~4 min of back-off), and databricks-sdk's own retries (300 s):
    # offline, both would hold the run until its 90 s timeout instead of failing the request.
    source = (
        "import requests\n"
        "from requests.adapters import HTTPAdapter\n"
        "from urllib3.util.retry import Retry\n"
        "from databricks.sdk import WorkspaceClient\n"
        "session = requests.Session()\n"
        "session.mount('https://', HTTPAdapter(max_retries=Retry(total=7, backoff_factor=2)))\n"
        "try:\n"
        "    session.get('https://no-such-host.invalid/api/2.0/mlflow/runs/get')\n"
        "except requests.ConnectionError as error:\n"
        "    seen = [type(error).__name__]\n"
        "try:\n"
        "    WorkspaceClient(host='https://no-such-host.invalid', token='x').current_user.me()\n"
        "except Exception as error:\n"
        "    seen.append(str(error))\n"
        "dbutils.notebook.exit(' | '.join(seen))"
    )
    path = upload_notebook(client, "/Shared/e2e/unresolved_host", source)
    output = run_one(client, path, timeout_seconds=90)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result.startswith("ConnectionError | ")
    assert "no-such-host.invalid" in output.notebook_output.result


def test_a_run_does_not_import_heavy_libraries_its_notebook_does_not_use(client: WorkspaceClient) -> None:
    # each costs every run its import time (databricks-sdk: ~1 s); the driver patches them only if imported
    source = (
        "import sys\n"
        "heavy = ['databricks.sdk', 'mlflow', 'IPython', 'requests', 'urllib3']\n"
        "dbutils.notebook.exit(','.join(name for name in heavy if name in sys.modules) or 'none')"
    )
    path = upload_notebook(client, "/Shared/e2e/imports", source)
    output = run_one(client, path)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "none"


def test_task_values_pass_between_tasks(client: WorkspaceClient) -> None:
    producer = upload_notebook(
        client, "/Shared/e2e/producer", 'dbutils.jobs.taskValues.set("rows", 42)\ndbutils.jobs.taskValues.set("n", "x")'
    )
    consumer = upload_notebook(
        client,
        "/Shared/e2e/consumer",
        'rows = dbutils.jobs.taskValues.get("produce", "rows", debugValue=0)\n'
        'missing = dbutils.jobs.taskValues.get("produce", "nope", default="dflt")\n'
        'dbutils.notebook.exit(f"{rows + 1} {missing}")',
    )
    run = client.jobs.submit(
        run_name="values",
        tasks=[task("produce", producer), task("consume", consumer, depends_on=[TaskDependency("produce")])],
    ).result(timeout=WAIT)

    consume = next(t for t in run.tasks if t.task_key == "consume")
    output = client.jobs.get_run_output(consume.run_id)
    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "43 dflt"


def test_notebook_run_starts_a_child_run(client: WorkspaceClient) -> None:
    upload_notebook(client, "/Shared/e2e/child", 'dbutils.notebook.exit("child got " + dbutils.widgets.get("x"))')
    upload_notebook(client, "/Shared/e2e/child_fails", 'raise RuntimeError("child broke")')
    parent = upload_notebook(
        client,
        "/Shared/e2e/parent",
        'value = dbutils.notebook.run("./child", 60, {"x": 5})\n'
        "try:\n"
        '    dbutils.notebook.run("child_fails", 60)\n'
        "    failure = None\n"
        "except Exception as error:\n"
        "    failure = f'{type(error).__name__}: {error}'\n"
        'dbutils.notebook.exit(value + " | " + failure)',
    )
    output = run_one(client, parent)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "child got 5 | WorkflowException: FAILED: RuntimeError: child broke"


# --- on Spark -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_workspace(spark_pool: ClusterPool, spark_data_dir: Path) -> Iterator[LocalWorkspace]:
    # The workspace shares the pool's data dir: Spark's DBFS root (ViewFS fallback) is <data dir>/dbfs.
    data_dir = spark_data_dir
    with LocalWorkspace(
        data_dir,
        mounts={"/mnt/azuremlblobstore": data_dir / "datastore"},
        storage={"abfss://lake@lakeacct.dfs.core.windows.net": data_dir / "lake"},
        spark=False,  # the session's shared pool, through the executor: closed by its own fixture
        executor=DriverExecutor(data_dir, spark=spark_pool, prefork=True),
    ) as workspace:
        yield workspace


@pytest.fixture(scope="module")
def spark_client(spark_workspace: LocalWorkspace) -> WorkspaceClient:
    return spark_workspace.client


def read_parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_table(folder).num_rows


@pytest.mark.spark
def test_demo_pattern_table_to_mounted_datastore(spark_client: WorkspaceClient, spark_data_dir: Path) -> None:
    source = (
        'spark.createDataFrame([(i, f"name {i}") for i in range(7)], "id INT, name STRING")'
        '.write.mode("overwrite").saveAsTable("default.e2e_people")' + SEP + 'df = spark.table("default.e2e_people")\n'
        'output_location = "/mnt/azuremlblobstore/" + dbutils.widgets.getArgument("output_folder")\n'
        'df.write.mode("overwrite").parquet(output_location)'
    )
    path = upload_notebook(spark_client, "/Shared/e2e/demo", source)
    output = run_one(spark_client, path, {"output_folder": "azureml/run-1/output_path"})

    assert output.error is None, output.error_trace
    assert read_parquet_rows(spark_data_dir / "datastore/azureml/run-1/output_path") == 7


@pytest.mark.spark
def test_sql_cells_dbfs_storage_and_runtime_mounts(
    spark_client: WorkspaceClient, spark_workspace: LocalWorkspace, spark_data_dir: Path, tmp_path: Path
) -> None:
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    source = SEP.join(
        [
            "# MAGIC %sql\n# MAGIC CREATE OR REPLACE TEMP VIEW answers AS SELECT 40 + ${two} AS answer;\n"
            "# MAGIC SELECT answer FROM answers",
            'df = spark.range(5)\ndf.write.mode("overwrite").parquet("dbfs:/e2e/range")\n'
            'df.write.mode("overwrite").parquet("abfss://lake@lakeacct.dfs.core.windows.net/e2e/range")\n'
            'assert spark.read.parquet("dbfs:/e2e/range").count() == 5',
            f'dbutils.fs.mount(source="file://{mounted}", mount_point="/mnt/e2e_runtime")\n'
            'df.write.mode("overwrite").parquet("/mnt/e2e_runtime/range")\n'
            'print(sorted(f.name for f in dbutils.fs.ls("/mnt/e2e_runtime")))',
            "import os\n"
            'dbutils.notebook.exit(os.environ["E2E_COLOR"] + " " + spark.conf.get("spark.sql.shuffle.partitions"))',
        ]
    )
    path = upload_notebook(spark_client, "/Shared/e2e/spark_features", source)
    cluster = ClusterSpec(
        spark_version="15.4.x-scala2.12",
        num_workers=0,
        spark_env_vars={"E2E_COLOR": "teal"},
        spark_conf={"spark.sql.shuffle.partitions": "3"},
    )
    notebook_task = NotebookTask(path, base_parameters={"two": "2"})
    run = spark_client.jobs.submit(
        run_name="spark", tasks=[SubmitTask(task_key="main", notebook_task=notebook_task, new_cluster=cluster)]
    ).result(timeout=WAIT)
    output = spark_client.jobs.get_run_output(run.tasks[0].run_id)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "teal 3"
    log = output_log(spark_workspace, run.tasks[0].run_id)
    assert "|answer|" in log and "|    42|" in log
    assert "['range/']" in log
    assert read_parquet_rows(spark_data_dir / "dbfs/e2e/range") == 5
    assert read_parquet_rows(spark_data_dir / "lake/e2e/range") == 5
    assert read_parquet_rows(mounted / "range") == 5


@pytest.mark.spark
def test_cancel_a_long_spark_job(spark_client: WorkspaceClient, spark_workspace: LocalWorkspace) -> None:
    source = 'spark.range(10**13).selectExpr("sum(id * 7 % 13) AS s").collect()'
    path = upload_notebook(spark_client, "/Shared/e2e/long_spark", source)
    waiter = spark_client.jobs.submit(run_name="long", tasks=[task("main", path)])
    run = _wait_for(spark_client, waiter.run_id, RunLifeCycleState.RUNNING)
    task_run_id = run.tasks[0].run_id
    pid_file = spark_workspace.data_dir / "runs" / str(task_run_id) / "driver.pid"
    time.sleep(3)  # let the query reach the server

    spark_client.jobs.cancel_run(waiter.run_id)
    run = _wait_for(spark_client, waiter.run_id, RunLifeCycleState.TERMINATED)

    assert run.state.result_state == RunResultState.CANCELED
    assert not Path(f"/proc/{int(pid_file.read_text())}").exists()
    # ...and the server really cancelled the run's Spark job, not just lost its client
    task_doc = json.loads((pid_file.parent / "task.json").read_text())
    session_id = task_doc["spark"]["remote"].split("session_id=")[1].split(";")[0]
    server_logs = list(spark_workspace.data_dir.glob("clusters/*/server.log"))
    deadline = time.monotonic() + 10
    while not any(f"Session_{session_id}" in line and "SPARK_JOB_CANCELLED" in line
                  for log in server_logs for line in log.read_text().splitlines()):
        assert time.monotonic() < deadline, "the run's Spark job was not cancelled on the server"
        time.sleep(0.2)


STANDBY_PROBE = (
    "import json, os, time\n"
    "# how long this driver process has existed: /proc's start time is in clock ticks since boot\n"
    "ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])\n"
    "age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf('SC_CLK_TCK')\n"
    "seen = {'created': time.time() - age, 'color': os.environ.get('E2E_COLOR'), 'leak': os.environ.get('E2E_LEAK'),\n"
    "        'who': dbutils.widgets.get('who'), 'n': spark.range(3).count()}\n"
    "os.environ['E2E_LEAK'] = 'left by ' + seen['who']\n"
    "dbutils.notebook.exit(json.dumps(seen))"
)


@pytest.mark.spark
def test_a_spark_run_gets_a_driver_connected_before_it_was_submitted(
    spark_client: WorkspaceClient, spark_workspace: LocalWorkspace
) -> None:
    """After a Spark run, a standby driver opens and warms a session for the next run ahead of time.
    The next run is handed that process, and still sees only its own environment and widgets."""
    path = upload_notebook(spark_client, "/Shared/e2e/standby_probe", STANDBY_PROBE)

    def probe(who: str, color: str) -> tuple[float, dict[str, object]]:
        cluster = ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0, spark_env_vars={"E2E_COLOR": color})
        submitted = time.time()
        output = run_one(spark_client, path, {"who": who}, existing_cluster_id=None, new_cluster=cluster)
        assert output.error is None, output.error_trace
        return submitted, json.loads(output.notebook_output.result)

    probe("first", "red")
    handed_over = []
    for attempt in range(3):  # a slow machine may need longer than one pause to warm the standby
        time.sleep(2)  # the standby forks, connects and warms its session meanwhile
        submitted, seen = probe(f"run{attempt}", f"color{attempt}")
        assert (seen["color"], seen["who"], seen["leak"], seen["n"]) == (f"color{attempt}", f"run{attempt}", None, 3)
        handed_over.append(seen["created"] < submitted - 1)  # the process existed before the run did
        if handed_over[-1]:
            break
    assert handed_over[-1], "no run was handed a standby driver"


@pytest.mark.spark
def test_load_table_cli_goes_through_the_running_workspace(
    spark_client: WorkspaceClient, spark_workspace: LocalWorkspace, tmp_path: Path
) -> None:
    csv = tmp_path / "sales.csv"
    csv.write_text("region,amount\nnorth,10\nsouth,32\n")
    loaded = subprocess.run(
        [sys.executable, "-m", "aml_databricks.cli", "workspace", "load-table", "main.sales.by_region", str(csv),
         "--data-dir", str(spark_workspace.data_dir)], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    # the running workspace owns the data dir: the command used it rather than opening it again
    assert loaded.stderr.strip() == (f"using the local workspace already running on {spark_workspace.data_dir}: "
                                     f"{spark_workspace.host} (pid {os.getpid()})")
    assert loaded.stdout.strip() == "loaded 2 rows into main.sales.by_region"

    total = 'str(spark.table("sales.by_region").agg({"amount": "sum"}).first()[0])'
    path = upload_notebook(spark_client, "/Shared/e2e/read_loaded", f"dbutils.notebook.exit({total})")
    assert run_one(spark_client, path).notebook_output.result == "42"


def _wait_for(client: WorkspaceClient, run_id: int, state: RunLifeCycleState) -> Run:
    deadline = time.monotonic() + 60
    while True:
        run = client.jobs.get_run(run_id)
        if run.state.life_cycle_state == state:
            return run
        assert time.monotonic() < deadline, f"run {run_id} stuck in {run.state.life_cycle_state}"
        time.sleep(0.1)


USAGE_TAGS = '''
import json

from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
names = ["clusterId", "clusterName", "clusterLogDeliveryEnabled", "clusterLogDestination", "sparkVersion"]
tags = {n: spark.conf.get("spark.databricks.clusterUsageTags." + n) for n in names}
with open("/dbfs/usage_tags.txt", "w") as f:  # a Python file task sees /dbfs too
    json.dump(tags, f)
'''


@pytest.mark.spark
def test_a_python_file_reads_the_cluster_usage_tags(
    spark_client: WorkspaceClient, spark_workspace: LocalWorkspace, tmp_path: Path
) -> None:
    script = tmp_path / "tags.py"
    script.write_text(USAGE_TAGS)
    run = spark_client.jobs.submit(run_name="tags", tasks=[SubmitTask(
        task_key="main", existing_cluster_id="local",
        spark_python_task=SparkPythonTask(python_file=str(script)))]).result(timeout=WAIT)

    output = spark_client.jobs.get_run_output(run.tasks[0].run_id)
    assert output.error is None, output.error_trace
    tags = json.loads((spark_workspace.data_dir / "dbfs" / "usage_tags.txt").read_text())
    assert tags == {"clusterId": "local", "clusterName": DEFAULT_CLUSTER_NAME, "clusterLogDeliveryEnabled": "false",
                    "clusterLogDestination": "", "sparkVersion": local_spark_version()}
