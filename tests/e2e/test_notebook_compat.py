"""What real public notebooks need (issue #11): nested runs that can't deadlock, files next to the
notebook, Unity Catalog names, SQL widgets, every %fs form, dbutils.help(), and one-line errors.

Driven through databricks-sdk against a live local workspace, as users drive it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import RunResultState
from databricks.sdk.service.workspace import Language

from aml_databricks.workspace import LocalWorkspace
from tests.e2e.test_notebook_features import output_log, run_one, spark_client, spark_workspace, task
from tests.fixtures_workspace import upload_notebook

__all__ = ["spark_client", "spark_workspace"]  # the shared Spark pool's workspace, as a fixture here too

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


def test_absolute_workspace_paths_read_files_import_modules_and_run_notebooks(client: WorkspaceClient) -> None:
    from databricks.sdk.service.workspace import ImportFormat

    client.workspace.upload("/Shared/compat/abs/lib/abs_mod.py", b"def triple(x):\n    return 3 * x\n",
                            format=ImportFormat.AUTO, overwrite=True)
    client.workspace.upload("/Shared/compat/abs/data/rows.csv", b"a,b\n1,2\n3,4\n", format=ImportFormat.RAW,
                            overwrite=True)
    upload_notebook(client, "/Shared/compat/abs/helper", "helper_value = 'from helper'")
    path = upload_notebook(
        client, "/Shared/compat/elsewhere/main",
        "import os, sys\n"
        "sys.path.append('/Workspace/Shared/compat/abs/lib')\n"
        "from abs_mod import triple\n"
        "rows = open('/Workspace/Shared/compat/abs/data/rows.csv').read().splitlines()\n"
        "listed = os.listdir('/Workspace/Shared/compat/abs/data')\n"
        "missing = os.path.exists('/Workspace/Shared/compat/abs/data/none.csv')"
        + SEP + "# MAGIC %run /Workspace/Shared/compat/abs/helper"
        + SEP + "dbutils.notebook.exit(f'{triple(2)} {len(rows)} {listed} {missing} {helper_value}')",
    )
    output = run_one(client, path)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "6 3 ['rows.csv'] False from helper"


def test_library_code_finds_the_notebooks_dbutils_through_get_ipython(client: WorkspaceClient) -> None:
    # The usual way a module next to a notebook reaches dbutils on Databricks (its notebooks run in IPython).
    from databricks.sdk.service.workspace import ImportFormat

    client.workspace.upload(
        "/Shared/compat/ipy/helpers.py",
        b"import IPython\n"
        b"def widget(name):\n"
        b"    shell = IPython.get_ipython()\n"
        b"    assert shell.user_ns['dbutils'] is shell.ns_table['user_global']['dbutils']\n"
        b"    return shell.user_ns['dbutils'].widgets.get(name)\n",
        format=ImportFormat.AUTO, overwrite=True)
    path = upload_notebook(client, "/Shared/compat/ipy/main",
                           "from helpers import widget\ndbutils.notebook.exit(widget('who'))")
    output = run_one(client, path, {"who": "ipython"})

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "ipython"


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


# --- on Spark (the shared warm pool) -------------------------------------------------------------

SQL_SEP = "\n\n-- COMMAND ----------\n\n"


@pytest.mark.spark
def test_unity_catalog_names_map_to_the_local_catalog(spark_client: WorkspaceClient) -> None:
    upload_notebook(
        spark_client, "/Shared/compat/uc_names",
        "USE CATALOG hive_metastore;" + SQL_SEP
        + "CREATE SCHEMA IF NOT EXISTS compat_uc;" + SQL_SEP
        + "CREATE TABLE IF NOT EXISTS main.compat_uc.ext (id INT) USING parquet LOCATION 'dbfs:/compat/uc_ext';"
        + SQL_SEP + "INSERT INTO hive_metastore.compat_uc.ext VALUES (1), (2);" + SQL_SEP
        + "CREATE OR REPLACE TEMP VIEW counted AS SELECT count(*) AS n FROM `main`.compat_uc.ext",
        Language.SQL,
    )
    check = upload_notebook(
        spark_client, "/Shared/compat/uc_names_check",
        'dbutils.notebook.run("./uc_names", 0)\n'
        'n = spark.sql("SELECT count(*) FROM hive_metastore.compat_uc.ext").first()[0]\n'
        'files = [f.name for f in dbutils.fs.ls("dbfs:/compat/uc_ext") if f.name.endswith(".parquet")]\n'
        'dbutils.notebook.exit(f"{n} {len(files) > 0}")',
    )
    output = run_one(spark_client, check)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "2 True"


@pytest.mark.spark
def test_an_unknown_catalog_is_one_clear_line(spark_client: WorkspaceClient) -> None:
    path = upload_notebook(spark_client, "/Shared/compat/unknown_catalog", "USE CATALOG samples", Language.SQL)
    output = run_one(spark_client, path)

    assert output.error == ("UnknownCatalog: [NO_SUCH_CATALOG_EXCEPTION] Catalog 'samples' was not found: the local "
                            "workspace has one catalog, hive_metastore (also named spark_catalog and main).")


@pytest.mark.spark
def test_sql_widgets_in_a_sql_notebook_with_base_parameters(spark_client: WorkspaceClient) -> None:
    upload_notebook(
        spark_client, "/Shared/compat/sql_widgets",
        "CREATE WIDGET TEXT city DEFAULT 'Oslo';" + SQL_SEP
        + "CREATE WIDGET DROPDOWN n DEFAULT '2' CHOICES SELECT * FROM VALUES ('1'), ('2'), ('3');" + SQL_SEP
        + "DROP TABLE IF EXISTS cities;" + SQL_SEP
        + "CREATE TABLE cities USING parquet AS SELECT * FROM VALUES ('Paris', 1), ('Bergen', 2), ('Oslo', 3) "
        "AS t(name, id);" + SQL_SEP
        + "CREATE OR REPLACE GLOBAL TEMP VIEW compat_widget_result AS SELECT "
        "(SELECT count(*) FROM cities WHERE name LIKE '%$city%') AS legacy, "
        "(SELECT count(*) FROM cities WHERE name = getArgument('city')) AS get_argument, "
        "(SELECT count(*) FROM cities WHERE name = :city) AS marker, "
        "(SELECT count(*) FROM cities WHERE id <= ${n}) AS braces;" + SQL_SEP
        + "REMOVE WIDGET n",
        Language.SQL,
    )
    check = upload_notebook(
        spark_client, "/Shared/compat/sql_widgets_check",
        'dbutils.notebook.run("./sql_widgets", 0, {"city": "Bergen"})\n'
        'row = spark.sql("SELECT * FROM global_temp.compat_widget_result").first()\n'
        'dbutils.notebook.exit(" ".join(str(v) for v in row))',
    )
    output = run_one(spark_client, check)

    # the parameter Bergen overrides the default Oslo in all four forms; n keeps its default 2
    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "1 1 1 2"


@pytest.mark.spark
def test_sql_errors_are_one_line_with_a_trimmed_trace(
    spark_client: WorkspaceClient, spark_workspace: LocalWorkspace
) -> None:
    parse = run_one(spark_client, upload_notebook(spark_client, "/Shared/compat/bad_sql", "SELEC 1", Language.SQL))
    path = upload_notebook(spark_client, "/Shared/compat/no_table",
                           "x = 1" + SEP + 'spark.table("compat_nope").count()')
    run = spark_client.jobs.submit(run_name="no table", tasks=[task("main", path)]).result(timeout=WAIT)
    missing = spark_client.jobs.get_run_output(run.tasks[0].run_id)
    log = output_log(spark_workspace, run.tasks[0].run_id)

    assert parse.error is not None and parse.error.startswith("ParseException: [PARSE_SYNTAX_ERROR] Syntax error")
    assert "\n" not in parse.error and run.state.state_message == missing.error
    assert missing.error is not None and missing.error.startswith("AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]")
    assert "\n" not in missing.error
    trace = missing.error_trace or ""
    assert trace.splitlines()[1].strip().startswith('File "<notebook /Shared/compat/no_table, cell 2>", line 6')
    assert "\tat org.apache" not in trace and len(trace.splitlines()) < 60
    assert "SQLQueryContextLogger" not in log and '"errorClass"' not in log


@pytest.mark.spark
def test_what_cannot_run_offline_says_so_in_one_line(spark_client: WorkspaceClient) -> None:
    rdd = run_one(spark_client, upload_notebook(spark_client, "/Shared/compat/rdd", "sc.parallelize([1, 2]).count()"))
    context = run_one(spark_client, upload_notebook(spark_client, "/Shared/compat/rdd2", "spark.sparkContext"))
    dataset = run_one(spark_client, upload_notebook(
        spark_client, "/Shared/compat/datasets",
        'spark.read.csv("/databricks-datasets/flights/departuredelays.csv").count()'))
    shell = run_one(spark_client, upload_notebook(
        spark_client, "/Shared/compat/datasets_sh", "# MAGIC %sh ls /dbfs/databricks-datasets/flights"))

    hint = "use the DataFrame API."
    assert rdd.error is not None and rdd.error.startswith("RDDNotSupported: The RDD API") and rdd.error.endswith(hint)
    assert context.error is not None and "Spark Connect" in context.error and context.error.endswith(hint)
    mount = "provide a copy with `aml-databricks workspace serve --mount /databricks-datasets=FOLDER`."
    assert dataset.error == ("AnalysisException: /databricks-datasets/flights/departuredelays.csv is not available: "
                             "Databricks' sample datasets are not shipped with the local workspace; " + mount)
    assert shell.error is not None and shell.error.startswith("CellError: /databricks-datasets/flights is not avail")
    assert all("viewfs" not in (o.error or "") + (o.error_trace or "") for o in (rdd, context, dataset, shell))


def test_a_host_that_does_not_resolve_fails_at_once_instead_of_retrying_until_the_timeout(
        client: WorkspaceClient) -> None:
    # What MLflow's `databricks` tracking URI does with DATABRICKS_HOST set to a workspace on the internet
    # (databricks-sdk retries a connection error for 300 s), and what a urllib3 Retry with backoff does
    # (MLflow's REST client: ~4 minutes). Hosts under .invalid never resolve (RFC 2606).
    path = upload_notebook(
        client, "/Shared/compat/offline_host",
        "import requests\n"
        "from requests.adapters import HTTPAdapter\n"
        "from urllib3.util.retry import Retry\n"
        "session = requests.Session()\n"
        "session.mount('https://', HTTPAdapter(max_retries=Retry(total=7, backoff_factor=2)))\n"
        "try:\n"
        "    session.get('https://api.no-such-host.invalid/x')\n"
        "except requests.ConnectionError as error:\n"
        "    print('caught as usual:', type(error).__name__)\n"
        + SEP +
        "from databricks.sdk import WorkspaceClient\n"
        "WorkspaceClient(host='https://demo.no-such-host.invalid', token='dapi-x').clusters.list_node_types()",
    )
    # Without the fix the SDK sleeps between retries until this timeout: TIMEDOUT, not FAILED.
    output = run_one(client, path, timeout_seconds=90)

    assert output.metadata.state.result_state == RunResultState.FAILED, output.metadata.state
    assert output.error is not None and "demo.no-such-host.invalid" in output.error
    assert "\n" not in output.error
    assert "caught as usual: ConnectionError" in (output.logs or "")


@pytest.mark.spark
def test_the_delta_spark_top_level_package(spark_client: WorkspaceClient) -> None:
    path = upload_notebook(
        spark_client, "/Shared/compat/delta_top_level",
        "import delta\n"
        "from delta import DeltaTable, configure_spark_with_delta_pip\n"
        "from pyspark.sql import SparkSession\n"
        "session = configure_spark_with_delta_pip(SparkSession.builder.appName('x')).getOrCreate()\n"
        "session.range(3).write.format('delta').mode('overwrite').save('/tmp/compat/delta_top_level')\n"
        "table = delta.DeltaTable.forPath(session, '/tmp/compat/delta_top_level')\n"
        "dbutils.notebook.exit(f'{DeltaTable is delta.tables.DeltaTable} {table.toDF().count()}')",
    )
    output = run_one(spark_client, path)

    assert output.error is None, output.error_trace
    assert output.notebook_output.result == "True 3"


@pytest.mark.spark
def test_managed_tables_live_where_databricks_puts_them_and_drop_removes_them(
        spark_client: WorkspaceClient) -> None:
    path = upload_notebook(
        spark_client, "/Shared/compat/managed_tables",
        "spark.sql('CREATE SCHEMA IF NOT EXISTS compat_loc')\n"
        "spark.sql('DROP TABLE IF EXISTS compat_loc.managed')\n"
        "spark.sql('CREATE TABLE compat_loc.managed (width INT, length INT)')\n"
        "spark.sql('INSERT INTO compat_loc.managed VALUES (3, 2)')\n"
        "rows = spark.sql('DESCRIBE EXTENDED compat_loc.managed').collect()\n"
        "location = [r.data_type for r in rows if r.col_name == 'Location'][0]\n"
        "folder = 'dbfs:/user/hive/warehouse/compat_loc.db/managed'\n"
        "listed = sorted(f.name for f in dbutils.fs.ls(folder))\n"
        "spark.sql('DROP TABLE compat_loc.managed')\n"
        "try:\n"
        "    dbutils.fs.ls(folder)\n"
        "    after_drop = 'still there'\n"
        "except Exception as error:\n"
        "    after_drop = type(error).__name__\n"
        "dbutils.notebook.exit(f'{location} {\"_delta_log/\" in listed} {after_drop}')",
    )
    output = run_one(spark_client, path)

    assert output.error is None, output.error_trace
    # DROP TABLE removes a managed table's folder (Databricks' DROP TABLE reference), so the corpus lesson
    # that lists it afterwards fails on Databricks too.
    assert output.notebook_output.result == (
        "dbfs:/user/hive/warehouse/compat_loc.db/managed True FileNotFoundError")
