"""Delta Lake tables in the local workspace, driven through the Jobs API as users drive it.

Notebooks write and read Delta tables on the shared Spark server (tests/fixtures_spark.py); the
test process checks the `_delta_log` with delta-rs itself, and writes tables a notebook then reads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import NotebookTask, RunOutput, SubmitTask
from databricks.sdk.service.workspace import Language

from aml_databricks.compute.host.pool import ClusterPool
from aml_databricks.compute.host.process import DriverExecutor
from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

WAIT = timedelta(seconds=600)
SEP = "\n\n# COMMAND ----------\n\n"
SQL_SEP = "\n\n-- COMMAND ----------\n\n"

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def delta_workspace(spark_pool: ClusterPool, spark_data_dir: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(
        spark_data_dir,
        mounts={"/mnt/azuremlblobstore": spark_data_dir / "datastore"},
        spark=False,  # the session's shared pool, through the executor: closed by its own fixture
        executor=DriverExecutor(spark_data_dir, spark=spark_pool, prefork=True),
    ) as workspace:
        yield workspace


@pytest.fixture(scope="module")
def client(delta_workspace: LocalWorkspace) -> WorkspaceClient:
    return delta_workspace.client


def run_notebook(client: WorkspaceClient, name: str, source: str, language: Language = Language.PYTHON) -> RunOutput:
    path = upload_notebook(client, f"/Shared/e2e/delta/{name}", source, language)
    notebook = NotebookTask(notebook_path=path)
    task = SubmitTask(task_key="main", notebook_task=notebook, existing_cluster_id="local")
    run = client.jobs.submit(run_name=name, tasks=[task]).result(timeout=WAIT)
    return client.jobs.get_run_output(run.tasks[0].run_id)


def result_of(output: RunOutput) -> dict[str, object]:
    assert output.error is None, output.error_trace
    return json.loads(output.notebook_output.result)  # type: ignore[no-any-return]


def delta_rows(folder: Path) -> list[dict[str, object]]:
    """The table's rows as delta-rs reads them (per file, not to_pyarrow_table: see operations.py)."""
    from deltalake import DeltaTable

    table = DeltaTable(str(folder))
    return sorted(table.to_pandas().to_dict("records"), key=lambda r: str(sorted(r.items())))


def test_path_table_modes_schema_and_time_travel(client: WorkspaceClient, spark_data_dir: Path) -> None:
    from deltalake import DeltaTable

    source = SEP.join(
        [
            "import json\nfrom pyspark.errors import AnalysisException\nseen = {}\np = 'dbfs:/delta/e2e/people'\n"
            "df = spark.createDataFrame([(i, f'n{i}') for i in range(8)], 'id BIGINT, name STRING').repartition(4)\n"
            "df.write.format('delta').mode('overwrite').save(p)",
            "try:\n    df.write.format('delta').save(p)\nexcept AnalysisException as e:\n    seen['exists'] = str(e)\n"
            "df.write.format('delta').mode('ignore').save(p)\n"
            "df.limit(2).write.format('delta').mode('append').save(p)\n"
            "try:\n    spark.range(1).selectExpr('id', 'id AS extra').write.format('delta').mode('append').save(p)\n"
            "except AnalysisException as e:\n    seen['mismatch'] = str(e)\n"
            "spark.range(1).selectExpr('id', \"'m' AS name\", \"'x' AS extra\").write.format('delta')"
            ".mode('append').option('mergeSchema', 'true').save(p)",
            "seen['latest'] = spark.read.format('delta').load(p).count()\n"
            "seen['v0'] = spark.read.format('delta').option('versionAsOf', 0).load(p).count()\n"
            "seen['default_format'] = spark.read.load(p).count()\n"
            "seen['columns'] = spark.read.load(p).columns\n"
            "seen['scan'] = spark.read.format('delta').load(p).select('name')._explain_string(extended=False)\n"
            "try:\n    spark.read.format('delta').load('dbfs:/delta/e2e/missing').count()\n"
            "except AnalysisException as e:\n    seen['missing'] = str(e)\n"
            "dbutils.notebook.exit(json.dumps(seen))",
        ]
    )
    seen = result_of(run_notebook(client, "modes", source))

    assert seen["exists"] == (
        "[DELTA_PATH_EXISTS] Cannot write to already existent path dbfs:/delta/e2e/people "
        "without setting OVERWRITE = 'true'."
    )
    assert str(seen["mismatch"]).startswith("[_LEGACY_ERROR_TEMP_DELTA_0007] A schema mismatch detected")
    assert "\n" not in str(seen["mismatch"])
    assert (seen["latest"], seen["v0"], seen["default_format"]) == (11, 8, 11)
    assert seen["columns"] == ["id", "name", "extra"]
    # read by Spark's parquet scan of the snapshot's files, pruned to the one column asked for
    assert "ParquetScan" in str(seen["scan"]) and "ReadSchema: struct<name:string>" in str(seen["scan"])
    assert seen["missing"] == "[PATH_NOT_FOUND] Path does not exist: dbfs:/delta/e2e/missing."
    # the log as delta-rs reads it: version 0 is ONE commit of the four tasks' files
    table = DeltaTable(str(spark_data_dir / "dbfs/delta/e2e/people"))
    assert table.version() == 3  # 0 overwrite, 1 append, 2 mergeSchema's schema change, 3 its append
    table.load_as_version(0)
    assert len(table.file_uris()) == 4
    assert table.protocol().min_reader_version == 1
    latest = DeltaTable(str(spark_data_dir / "dbfs/delta/e2e/people"))
    assert [f.name for f in latest.schema().fields] == ["id", "name", "extra"]
    assert [h["operation"] for h in latest.history()][-1] == "CREATE TABLE"
    assert len(delta_rows(spark_data_dir / "dbfs/delta/e2e/people")) == 11


def test_a_table_written_by_delta_rs_is_read_by_a_notebook_on_a_mount(
    client: WorkspaceClient, spark_data_dir: Path
) -> None:
    from deltalake import write_deltalake

    folder = spark_data_dir / "datastore/delta_in"
    moment = pa.array([1_700_000_000_000_000] * 3, pa.timestamp("us", tz="UTC"))
    write_deltalake(str(folder), pa.table({"k": pa.array([1, 2, 3], pa.int64()), "v": ["a", "b", "c"], "t": moment}))
    write_deltalake(str(folder), pa.table({"k": pa.array([4], pa.int64()), "v": ["d"], "t": moment[:1]}), mode="append")
    source = (
        "import json\ndf = spark.read.format('delta').load('/mnt/azuremlblobstore/delta_in')\n"
        "spark.sql(\"SELECT timestamp'2024-01-02 03:04:05' AS ts, date'2024-01-02' AS d, 1.5D AS x\")"
        ".write.format('delta').mode('overwrite').save('dbfs:/delta/e2e/types')\n"
        "dbutils.notebook.exit(json.dumps({'n': df.count(), 'sum': df.agg({'k': 'sum'}).first()[0],\n"
        "    'types': [f.dataType.simpleString() for f in df.schema.fields],\n"
        "    'epoch': df.selectExpr('max(unix_seconds(t))').first()[0],\n"
        "    'v0': spark.read.option('versionAsOf', 0).load('/mnt/azuremlblobstore/delta_in').count()}))"
    )
    seen = result_of(run_notebook(client, "read_rs", source))

    assert seen == {"n": 4, "sum": 10, "types": ["bigint", "string", "timestamp"], "epoch": 1_700_000_000, "v0": 3}
    from deltalake import DeltaTable

    written = DeltaTable(str(spark_data_dir / "dbfs/delta/e2e/types"))
    assert [json.loads(f.type.to_json()) for f in written.schema().fields] == ["timestamp", "date", "double"]


def test_a_failing_write_leaves_the_version_and_files_unchanged(client: WorkspaceClient, spark_data_dir: Path) -> None:
    from deltalake import DeltaTable

    source = (
        "from pyspark.sql.functions import udf\np = 'dbfs:/delta/e2e/fails'\n"
        "spark.range(4).write.format('delta').save(p)\n"
        "@udf('long')\ndef boom(x):\n    if x == 7:\n        raise ValueError('task fails')\n    return x\n"
        "try:\n    spark.range(10).repartition(3).select(boom('id').alias('id')).write.format('delta')"
        ".mode('append').save(p)\nexcept Exception:\n    dbutils.notebook.exit('failed as expected')"
    )
    output = run_notebook(client, "fails", source)

    assert output.notebook_output.result == "failed as expected", output.error_trace
    folder = spark_data_dir / "dbfs/delta/e2e/fails"
    assert DeltaTable(str(folder)).version() == 0
    assert len(list(folder.glob("*.parquet"))) == len(DeltaTable(str(folder)).file_uris())


def test_partitioned_writes_and_concurrent_appends(client: WorkspaceClient, spark_data_dir: Path) -> None:
    from deltalake import DeltaTable

    source = (
        "spark.range(6).selectExpr('id', 'id % 3 AS part').write.format('delta').partitionBy('part')"
        ".mode('overwrite').save('/Volumes/main/default/vol/parts')"
    )
    assert run_notebook(client, "partitioned", source).error is None
    parts = spark_data_dir / "volumes/main/default/vol/parts"
    table = DeltaTable(str(parts))
    assert table.metadata().partition_columns == ["part"]
    assert sorted(p.name for p in parts.glob("part=*")) == ["part=0", "part=1", "part=2"]
    assert len(delta_rows(parts)) == 6

    append = "spark.range(5).write.format('delta').mode('append').save('dbfs:/delta/e2e/concurrent')"
    run_notebook(client, "concurrent_setup", append)
    outputs: list[RunOutput] = []
    runners = [
        threading.Thread(target=lambda i=i: outputs.append(run_notebook(client, f"concurrent_{i}", append)))
        for i in range(2)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    assert [o.error for o in outputs] == [None, None]
    concurrent = DeltaTable(str(spark_data_dir / "dbfs/delta/e2e/concurrent"))
    assert concurrent.version() == 2
    assert concurrent.count() == 15


def test_delta_is_the_default_table_format(client: WorkspaceClient, spark_data_dir: Path) -> None:
    source = SEP.join(
        [
            "import json\nspark.sql('DROP TABLE IF EXISTS e2e_sales')\nspark.sql('DROP TABLE IF EXISTS e2e_ctas')\n"
            "spark.range(5).selectExpr('id', 'id * 10 AS amount').write.saveAsTable('e2e_sales')\n"
            "spark.range(5, 7).selectExpr('id', 'id * 10 AS amount').write.mode('append')"
            ".saveAsTable('default.e2e_sales')",
            "spark.sql('CREATE TABLE IF NOT EXISTS e2e_created (id BIGINT, name STRING)')\n"
            "spark.sql(\"INSERT INTO e2e_created VALUES (1, 'a'), (2, 'b')\")\n"
            "spark.sql('CREATE TABLE e2e_ctas AS SELECT * FROM e2e_sales WHERE id < 3')",
            "seen = {\n"
            " 'sales': spark.table('e2e_sales').count(),\n"
            " 'created': spark.sql('SELECT count(*) FROM e2e_created').first()[0],\n"
            " 'ctas': spark.table('e2e_ctas').count(),\n"
            " 'v1': spark.sql('SELECT count(*) FROM e2e_sales VERSION AS OF 1').first()[0],\n"
            " 'by_path': spark.sql('SELECT count(*) FROM delta.`dbfs:/user/hive/warehouse/e2e_sales`').first()[0],\n"
            " 'iris': spark.table('samples.iris').count(),\n"
            "}\nspark.sql('DROP TABLE e2e_ctas')\nseen['tables'] = sorted(t.name for t in spark.catalog.listTables())\n"
            "dbutils.notebook.exit(json.dumps(seen))",
        ]
    )
    seen = result_of(run_notebook(client, "catalog", source))

    assert (seen["sales"], seen["created"], seen["ctas"], seen["v1"], seen["by_path"]) == (7, 2, 3, 5, 7)
    assert seen["iris"] == 150
    assert "e2e_ctas" not in seen["tables"] and "e2e_sales" in seen["tables"]
    warehouse = spark_data_dir / "dbfs/user/hive/warehouse"
    assert {r["amount"] for r in delta_rows(warehouse / "e2e_sales")} == {0, 10, 20, 30, 40, 50, 60}
    assert not (warehouse / "e2e_ctas").exists()


def test_three_part_names_in_the_dataframe_api_and_sql(client: WorkspaceClient, spark_data_dir: Path) -> None:
    source = SEP.join(
        [
            "import json\nseen = {}\nspark.sql('CREATE SCHEMA IF NOT EXISTS main.e2e_uc')\n"
            "spark.range(4).write.mode('overwrite').saveAsTable('main.e2e_uc.t')\n"
            "spark.range(4, 6).write.mode('append').saveAsTable('hive_metastore.e2e_uc.t')\n"
            "spark.range(3).write.format('parquet').mode('overwrite').saveAsTable('main.e2e_uc.p')\n"
            "spark.sql('INSERT INTO hive_metastore.e2e_uc.p VALUES (7)')",
            "seen['counts'] = [spark.table('main.e2e_uc.t').count(),\n"
            "                  spark.read.table('hive_metastore.e2e_uc.t').count(), spark.table('e2e_uc.t').count(),\n"
            "                  spark.table('main.e2e_uc.p').count(),\n"
            "                  spark.sql('SELECT count(*) FROM main.e2e_uc.t VERSION AS OF 1').first()[0]]\n"
            "seen['exists'] = spark.catalog.tableExists('main.e2e_uc.t')\n"
            "seen['listed'] = sorted(t.name for t in spark.catalog.listTables('hive_metastore.e2e_uc'))\n"
            "seen['history'] = spark.sql('DESCRIBE HISTORY main.e2e_uc.t').count()\n"
            "seen['samples'] = spark.table('hive_metastore.samples.iris').count()\n"
            "seen['first'] = spark.sql('SELECT current_catalog()').first()[0]\n"
            "spark.sql('USE CATALOG main')\n"
            "seen['use'] = [spark.sql('SELECT current_catalog()').first()[0], spark.catalog.currentCatalog()]\n"
            "spark.catalog.setCurrentCatalog('hive_metastore')\nspark.sql('USE e2e_uc')\n"
            "seen['set'] = [spark.sql('SELECT current_catalog(), current_database()').first()[:],\n"
            "               spark.table('t').count()]\n"
            "spark.sql('DROP TABLE main.e2e_uc.p')\nseen['dropped'] = spark.catalog.tableExists('e2e_uc.p')\n"
            "dbutils.notebook.exit(json.dumps(seen))",
        ]
    )
    seen = result_of(run_notebook(client, "names", source))

    assert seen["counts"] == [6, 6, 6, 4, 4]  # version 0: the catalog's CREATE TABLE, 1: the overwrite, 2: the append
    assert seen["exists"] is True
    assert seen["listed"] == ["p", "t"]
    assert seen["history"] == 3
    assert seen["samples"] == 150
    assert seen["first"] == "spark_catalog"
    assert seen["use"] == ["main", "main"]
    assert seen["set"] == [["hive_metastore", "e2e_uc"], 6]
    assert seen["dropped"] is False
    assert len(delta_rows(spark_data_dir / "dbfs/user/hive/warehouse/e2e_uc.db/t")) == 6


def test_delta_tables_api_in_a_notebook(client: WorkspaceClient, spark_data_dir: Path) -> None:
    source = SEP.join(
        [
            "import json\nfrom delta.tables import DeltaTable\np = 'dbfs:/delta/e2e/api'\n"
            "spark.createDataFrame([(1, 'a'), (2, 'b'), (3, 'c')], 'id BIGINT, v STRING').write.format('delta')"
            ".mode('overwrite').save(p)\n"
            "t = DeltaTable.forPath(spark, p)\n"
            "updates = spark.createDataFrame([(2, 'B'), (4, 'd')], 'id BIGINT, v STRING')\n"
            "(t.alias('t').merge(updates.alias('s'), 't.id = s.id')\n"
            " .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())",
            "t.update(condition=\"id = 1\", set={'v': \"'A'\"})\nt.delete('id = 3')\n"
            "seen = {'rows': sorted(tuple(r) for r in t.toDF().collect()),\n"
            "        'is_delta': DeltaTable.isDeltaTable(spark, p),\n"
            "        'not_delta': DeltaTable.isDeltaTable(spark, '/nope'),\n"
            "        'history': [r.operation for r in t.history().collect()],\n"
            "        'detail': t.detail().select('format', 'numFiles').first().asDict()}\n"
            "t.optimize().executeCompaction()\nt.restoreToVersion(0)\n"
            "seen['restored'] = sorted(tuple(r) for r in spark.read.format('delta').load(p).collect())\n"
            "dbutils.notebook.exit(json.dumps(seen))",
        ]
    )
    seen = result_of(run_notebook(client, "api", source))

    assert seen["rows"] == [[1, "A"], [2, "B"], [4, "d"]]
    assert (seen["is_delta"], seen["not_delta"]) == (True, False)
    assert seen["history"][:3] == ["DELETE", "UPDATE", "MERGE"]
    assert seen["detail"]["format"] == "delta"
    assert seen["restored"] == [[1, "a"], [2, "b"], [3, "c"]]


def sql_cell(text: str) -> str:
    return "\n".join("# MAGIC %sql" if i == 0 else "# MAGIC " + line for i, line in enumerate(["", *text.splitlines()]))


def test_delta_sql_statements_in_sql_cells(client: WorkspaceClient) -> None:
    source = SEP.join(
        [
            sql_cell(
                "DROP TABLE IF EXISTS e2e_sql;\nCREATE TABLE e2e_sql (id BIGINT, v STRING);\n"
                "INSERT INTO e2e_sql VALUES (1, 'a'), (2, 'b'), (3, 'c');\n"
                "CREATE OR REPLACE TEMP VIEW e2e_src AS SELECT * FROM VALUES (2L, 'B'), (5L, 'e') AS s(id, v)"
            ),
            sql_cell(
                "MERGE INTO e2e_sql t USING e2e_src s ON t.id = s.id\n"
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            ),
            sql_cell("UPDATE e2e_sql SET v = 'A' WHERE id = 1;\nDELETE FROM e2e_sql WHERE id = 3;\nOPTIMIZE e2e_sql"),
            "import json\nseen = {\n"
            " 'rows': [tuple(r) for r in spark.sql('SELECT id, v FROM e2e_sql ORDER BY id').collect()],\n"
            " 'history': [r.operation for r in spark.sql('DESCRIBE HISTORY e2e_sql').collect()],\n"
            " 'detail': spark.sql('DESCRIBE DETAIL e2e_sql').columns[:5],\n"
            " 'v1': spark.sql('SELECT count(*) FROM e2e_sql VERSION AS OF 1').first()[0],\n"
            "}\nspark.sql('RESTORE TABLE e2e_sql TO VERSION AS OF 1')\n"
            "seen['restored'] = sorted(tuple(r) for r in spark.table('e2e_sql').collect())\n"
            "dbutils.notebook.exit(json.dumps(seen))",
        ]
    )
    seen = result_of(run_notebook(client, "sql", source))

    assert seen["rows"] == [[1, "A"], [2, "B"], [5, "e"]]
    assert seen["history"][-5:] == ["DELETE", "UPDATE", "MERGE", "WRITE", "CREATE TABLE"]
    assert seen["detail"] == ["format", "id", "name", "description", "location"]
    assert seen["v1"] == 3
    assert seen["restored"] == [[1, "a"], [2, "b"], [3, "c"]]


REFUSED = {
    "SELECT * FROM table_changes('e2e_sales', 0)": "Change data feed",
    "ALTER TABLE e2e_sales ADD CONSTRAINT positive CHECK (amount >= 0)": "CHECK constraints",
    "CREATE TABLE e2e_gen (a INT, b INT GENERATED ALWAYS AS (a * 2))": "Generated columns",
    "CREATE TABLE e2e_dv (a INT) TBLPROPERTIES ('delta.enableDeletionVectors' = true)": "Deletion vectors",
    "CREATE TABLE e2e_lc (a INT) CLUSTER BY (a)": "Liquid clustering (CLUSTER BY)",
}


def test_unsupported_delta_features_fail_in_one_line(client: WorkspaceClient) -> None:
    source = (
        "import json\nfrom pyspark.errors import AnalysisException\nseen = []\n"
        f"for statement in {list(REFUSED)!r}:\n"
        "    try:\n        spark.sql(statement)\n    except AnalysisException as e:\n        seen.append(str(e))\n"
        "dbutils.notebook.exit(json.dumps(seen))"
    )
    seen = result_of(run_notebook(client, "refused", source))

    assert seen == [
        f"[DELTA_UNSUPPORTED_LOCALLY] {feature} is not supported by the local workspace's Delta tables (delta-rs)."
        for feature in REFUSED.values()
    ]


def test_delta_tables_persist_across_a_server_restart(
    client: WorkspaceClient, spark_pool: ClusterPool, spark_data_dir: Path
) -> None:
    source = (
        "spark.sql('DROP TABLE IF EXISTS e2e_kept')\n"
        "spark.range(4).write.saveAsTable('e2e_kept')\ndbutils.notebook.exit('saved')"
    )
    assert run_notebook(client, "persist_write", source).notebook_output.result == "saved"
    spark_pool.stop("local")  # the next run starts the shared server again, on the same metastore

    source = (
        "import json\ndetail = spark.sql('DESCRIBE DETAIL samples.iris').first()\n"
        "dbutils.notebook.exit(json.dumps({'kept': spark.table('e2e_kept').count(),\n"
        "    'provider': [r[1] for r in spark.sql('DESCRIBE TABLE EXTENDED e2e_kept').collect()\n"
        "                 if r[0] == 'Provider'],\n"
        "    'iris': [detail.format, detail.numFiles > 0]}))"
    )
    seen = result_of(run_notebook(client, "persist_read", source))

    assert seen == {"kept": 4, "provider": ["delta"], "iris": ["parquet", True]}
